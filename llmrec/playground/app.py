"""The playground's web page: a thin Gradio layer over `Playground`.

Every control maps to a field of `Request`; the prompt re-renders as the template, history,
attributes or session change, and Generate runs the model and the grounding. Nothing is
fetched from the internet: the page, its fonts and its scripts ship inside the gradio
package, and analytics are off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import polars as pl

from llmrec.data.schema import LOCALES
from llmrec.errors import first_line
from llmrec.models.prepare import DEFAULT_MODELS
from llmrec.playground.service import MAX_GROUNDED, Answer, Playground, PlaygroundConfig, Rendered, Request
from llmrec.playground.templates import TemplateText
from llmrec.prompts.render import ATTRIBUTES
from llmrec.retrieve import EncoderConfig

SOURCES = {"a session of the split": "split", "typed items": "typed"}
ERRORS = (ValueError, FileNotFoundError, ModuleNotFoundError)  # a bad setting: shown on the page, the server goes on
NO_TITLES = pl.DataFrame(schema={"candidate": pl.Int64, "title": pl.String, "score": pl.Float64})
NO_PRODUCTS = pl.DataFrame(
    schema={
        "candidate": pl.Int64,
        "rank": pl.UInt16,
        "title": pl.String,
        "price": pl.Float64,
        "similarity": pl.Float32,
        "id": pl.String,
    }
)
LANGUAGE_MODELS = tuple(
    name for name in DEFAULT_MODELS if name != EncoderConfig().name
)  # the default models that generate


def build_app(playground: Playground) -> gr.Blocks:
    """The page, wired to `playground`."""
    defaults = playground.default_request()
    with gr.Blocks(title="llmrec playground", analytics_enabled=False) as app:
        gr.Markdown(
            "## llmrec prompt playground\nA shopping session becomes a prompt; the model writes the "
            "next product's title; "
            "each title is grounded to the nearest products of the catalog."
        )
        with gr.Row():
            with gr.Column(scale=2):
                data = gr.Textbox(defaults.data, label="Data folder", elem_id="data")
                with gr.Row():
                    split = gr.Radio(["valid", "test"], value=defaults.split, label="Split (task 3)", elem_id="split")
                    locale = gr.Dropdown(list(LOCALES), value=defaults.locale, label="Locale", elem_id="locale")
                source = gr.Radio(list(SOURCES), value="a session of the split", label="Session", elem_id="source")
                session = gr.Number(
                    0,
                    label="Session index (among the split's sessions of the locale)",
                    precision=0,
                    minimum=0,
                    elem_id="session",
                )
                typed = gr.Textbox(
                    label="Typed items: product titles or ids, one per line, oldest first", lines=4, elem_id="typed"
                )
                with gr.Accordion("Prompt template", open=True):
                    header = gr.Textbox(label="Header", lines=2, elem_id="header")
                    item = gr.Textbox(label="Item line ({title} then {attributes})", elem_id="item")
                    footer = gr.Textbox(label="Footer", lines=2, elem_id="footer")
                    history = gr.Slider(
                        1, 30, value=defaults.history, step=1, label="History K (last items shown)", elem_id="history"
                    )
                    attributes = gr.CheckboxGroup(
                        list(ATTRIBUTES), value=defaults.attributes, label="Attributes", elem_id="attributes"
                    )
                with gr.Accordion("Model", open=True):
                    model = gr.Dropdown(
                        list(dict.fromkeys([defaults.model, *LANGUAGE_MODELS])),
                        value=defaults.model,
                        allow_custom_value=True,
                        label="Model (a default model, a folder or a hub id)",
                        elem_id="model",
                    )
                    adapter = gr.Textbox(defaults.adapter, label="LoRA adapter folder (empty: none)", elem_id="adapter")
                    backend = gr.Radio(["hf", "vllm"], value=defaults.backend, label="Backend", elem_id="backend")
                with gr.Accordion("Decoding", open=True):
                    decoding = gr.Radio(
                        ["greedy", "beam", "sample", "constrained"],
                        value=defaults.decoding,
                        label="Decoding",
                        elem_id="decoding",
                    )
                    with gr.Row():
                        candidates_n = gr.Number(
                            defaults.num_candidates,
                            label="Candidates",
                            precision=0,
                            minimum=1,
                            elem_id="num-candidates",
                        )
                        max_new_tokens = gr.Number(
                            defaults.max_new_tokens,
                            label="Max new tokens",
                            precision=0,
                            minimum=1,
                            elem_id="max-new-tokens",
                        )
                        ground_k = gr.Number(
                            defaults.ground_k,
                            label="Products per title",
                            precision=0,
                            minimum=1,
                            maximum=MAX_GROUNDED,
                            elem_id="ground-k",
                        )
                    with gr.Row():
                        temperature = gr.Slider(
                            0.05,
                            2.0,
                            value=defaults.temperature,
                            step=0.05,
                            label="Temperature (sample)",
                            elem_id="temperature",
                        )
                        top_p = gr.Slider(
                            0.05, 1.0, value=defaults.top_p, step=0.05, label="Top p (sample)", elem_id="top-p"
                        )
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="status")
                prompt = gr.Textbox(
                    label="Prompt, exactly as the model reads it",
                    lines=14,
                    max_lines=40,
                    interactive=False,
                    buttons=["copy"],
                    elem_id="prompt",
                )
                target = gr.Textbox(label="True next item", interactive=False, elem_id="target")
                titles = gr.Dataframe(
                    NO_TITLES,
                    label="Generated titles (score: total log-probability)",
                    interactive=False,
                    wrap=True,
                    column_widths=["12%", "70%", "18%"],
                    elem_id="candidates",
                )
                grounded = gr.Dataframe(
                    NO_PRODUCTS,
                    label="Grounded products of each generated title (candidate, rank)",
                    interactive=False,
                    wrap=True,
                    column_widths=["10%", "7%", "45%", "10%", "12%", "16%"],
                    elem_id="grounded",
                )

        controls = [
            data,
            split,
            locale,
            source,
            session,
            typed,
            header,
            item,
            footer,
            history,
            attributes,
            model,
            adapter,
            backend,
            decoding,
            candidates_n,
            temperature,
            top_p,
            max_new_tokens,
            ground_k,
        ]
        results = [status, prompt, target, titles, grounded]

        def request_of(values: tuple) -> Request:
            (
                data_v,
                split_v,
                locale_v,
                source_v,
                session_v,
                typed_v,
                header_v,
                item_v,
                footer_v,
                history_v,
                attributes_v,
                model_v,
                adapter_v,
                backend_v,
                decoding_v,
                n_v,
                temperature_v,
                top_p_v,
                tokens_v,
                ground_v,
            ) = values
            return Request(
                data=data_v,
                split=split_v,
                locale=locale_v,
                source=SOURCES[source_v],
                session=int(session_v or 0),
                typed=typed_v or "",
                template=TemplateText(header_v or "", item_v or "", footer_v or ""),
                history=int(history_v),
                attributes=list(attributes_v or []),
                model=model_v,
                adapter=adapter_v or "",
                backend=backend_v,
                decoding=decoding_v,
                num_candidates=int(n_v or 1),
                temperature=float(temperature_v),
                top_p=float(top_p_v),
                max_new_tokens=int(tokens_v or 1),
                ground_k=int(ground_v or 1),
            )

        def render(*values) -> list:
            try:
                rendered = playground.render(request_of(values))
            except ERRORS as error:
                return failed(error)
            return [describe(rendered), rendered.prompt, target_text(rendered, values), NO_TITLES, NO_PRODUCTS]

        def answer(*values) -> list:
            try:
                result = playground.answer(request_of(values))
            except ERRORS as error:
                return failed(error)
            return [
                describe(result.rendered, result),
                result.rendered.prompt,
                target_text(result.rendered, values),
                shown(result.candidates),
                shown(result.grounded),
            ]

        def template_of(locale_v: str, data_v: str) -> list:
            try:
                text = playground.template_text(locale_v, data_v)
            except ERRORS:  # a folder or locale the template does not cover: render names the problem
                return [gr.update(), gr.update(), gr.update()]
            return [text.header, text.item, text.footer]

        prompt_controls = [split, source, session, typed, header, item, footer, history, attributes, model]
        gr.on([c.input for c in prompt_controls], render, controls, results, trigger_mode="always_last")
        # a new locale or data folder loads its template (`prompt.template: auto` follows the folder); a folder
        # path is read once typed, not per keystroke
        gr.on([locale.input, data.submit, data.blur], template_of, [locale, data], [header, item, footer]).then(
            render, controls, results
        )
        decoding.input(lambda d, n: 1 if d == "greedy" else n, [decoding, candidates_n], candidates_n)
        generate.click(answer, controls, results, concurrency_limit=1)
        app.load(template_of, [locale, data], [header, item, footer]).then(render, controls, results)
    return app


def launch(
    playground: Playground, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False, block: bool = True
) -> gr.Blocks:
    """Serves the page at http://host:port. `block`: until interrupted; otherwise the server
    runs in a background thread and the caller closes the returned app."""
    app = build_app(playground)
    app.launch(
        server_name=host,
        server_port=port,
        inbrowser=open_browser,
        prevent_thread_lock=not block,
        ssr_mode=False,
        show_error=True,
        quiet=not block,
        theme=gr.themes.Default(),
    )
    return app


def serve(
    config: PlaygroundConfig, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False, log=print
) -> None:
    """`llmrec playground`: the page over a playground built from `config`, until Ctrl-C. The
    hub stays offline unless the config allows it; serving beyond this machine is announced."""
    if not config.allow_hub:
        os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if not is_loopback(host):
        log(
            f"WARNING: serving on {host}: anyone who can reach this machine on port {port} can run "
            "models on it and read the data "
            f"under {config.data_root or Path(config.data).resolve().parent} and {config.runs_root}. "
            "Use --host 127.0.0.1 to keep it local."
        )
    playground = Playground(config)
    try:
        launch(playground, host, port, open_browser, block=True)
    finally:
        playground.close()


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def failed(error: Exception) -> list:
    return [f"**Error:** {first_line(error)}", "", "", NO_TITLES, NO_PRODUCTS]


def describe(rendered: Rendered, result: Answer | None = None) -> str:
    line = f"{rendered.session} · prompt: {rendered.tokens} tokens"
    if result is not None:
        count = result.candidates.height
        line += f" · {count} title{'s' if count != 1 else ''} generated in {result.seconds:.2f} s"
    return line


def target_text(rendered: Rendered, values: tuple) -> str:
    if rendered.target is not None:
        return rendered.target
    return "(a typed session has no true next item)" if SOURCES[values[3]] == "typed" else "(this split is unlabelled)"


def shown(frame: pl.DataFrame) -> Any:
    """Scores and similarities at three decimals, as the page shows them."""
    return frame.with_columns(pl.col(pl.Float32, pl.Float64).cast(pl.Float64).round(3))
