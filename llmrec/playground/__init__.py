"""The prompt playground: pick or type a session, edit its prompt live, generate titles and see
the products they ground to, in a local web page (`llmrec playground`). The engine
(`Playground`) needs no UI; the page (`llmrec.playground.app`: `build_app`, `launch`,
`serve`) imports gradio."""

from llmrec.playground.service import Answer, Playground, PlaygroundConfig, Rendered, Request
from llmrec.playground.templates import TemplateText

__all__ = ["Answer", "Playground", "PlaygroundConfig", "Rendered", "Request", "TemplateText"]
