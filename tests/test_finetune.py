"""LoRA and QLoRA steps on a tiny random model: the loss falls, runs resume exactly,
adapters save, load and merge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from llmrec.config import load_config
from llmrec.data.dataset import AmazonM2
from llmrec.data.split import SplitConfig, load_task_split, titles_of
from llmrec.errors import ConfigError
from llmrec.models.adapters import export_merged
from llmrec.prompts import PromptConfig, prompt_dataset
from llmrec.train.config import Task3Config
from llmrec.train.finetune import collate, finetune
from tests.helpers import tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def examples(tiny_data):
    split = load_task_split(AmazonM2(tiny_data), 3, SplitConfig(name="valid"))
    history = split.history.head(400)
    titles = titles_of(history, split.catalog).fill_null("")
    prompt = PromptConfig(history=2, attributes=[])
    train = prompt_dataset(history, split.catalog, prompt, titles)
    valid = prompt_dataset(split.sessions.head(8), split.catalog, prompt, split.targets.head(8))
    return train, valid


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, examples):
    """A random 2-layer Llama (head_dim 64, as vLLM's CPU attention needs) with a tokenizer
    trained on the prompts."""
    train, _ = examples
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = tiny_tokenizer(list(train["prompt"]) + list(train["completion"]), vocab_size=600)
    tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_config(tiny_model, out, *overrides) -> Task3Config:
    defaults = [
        f"model={tiny_model}",
        f"train.out={out}",
        "train.batch_size=4",
        "train.grad_accum=1",
        "train.lr=0.02",
        "train.warmup_steps=0",
        "train.log_every=1",
        "train.eval_every=100",
        "lora.dropout=0.0",
        "lora.r=8",
        "generate.max_new_tokens=8",
    ]
    return load_config(Task3Config, None, [*defaults, *overrides])


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_collate_marks_only_completion_tokens():
    from llmrec.train.finetune import Example

    batch = collate([Example([5, 6, 7, 8], 2), Example([5, 9, 1], 1)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, 1, 0]]
    assert batch["rows"].tolist() == [0, 0, 1, 1] and batch["positions"].tolist() == [1, 2, 0, 1]
    assert batch["targets"].tolist() == [7, 8, 9, 1]


def test_lora_steps_reduce_the_loss_and_save_a_loadable_adapter(tiny_model, examples, tmp_path):
    train, valid = examples
    run = tmp_path / "run"
    metrics = finetune(
        run_config(tiny_model, run, "train.max_steps=12"),
        str(tiny_model),
        train.select(range(8)),
        valid,
        log=lambda _: None,
    )
    curve = losses(run)
    assert sum(curve[-3:]) / 3 < curve[0] - 0.1  # the same 8 examples again and again: the loss must fall
    assert {"loss", "bleu", "perplexity"} <= set(metrics) and 0 <= metrics["bleu"] <= 1
    assert (run / "adapter" / "adapter_model.safetensors").exists() and (run / "config.yaml").exists()
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run / "adapter")
    merged_dir = export_merged(run / "adapter", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        assert torch.allclose(tuned(ids).logits, merged(ids).logits, atol=1e-4)
        assert not torch.allclose(
            AutoModelForCausalLM.from_pretrained(tiny_model)(ids).logits, merged(ids).logits, atol=1e-4
        )
    bfloat16 = tmp_path / "bf16"  # a base model saved in bfloat16, as SmolLM2 and Gemma are: folded in float32
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(bfloat16)
    upcast = AutoModelForCausalLM.from_pretrained(bfloat16, dtype=torch.float32)
    exact = PeftModel.from_pretrained(upcast, run / "adapter")
    folded = AutoModelForCausalLM.from_pretrained(export_merged(run / "adapter", tmp_path / "m16", str(bfloat16)))
    with torch.no_grad():
        assert torch.allclose(exact(ids).logits, folded(ids).logits, atol=1e-4)


def test_qlora_nf4_steps_reduce_the_loss(tiny_model, examples, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is missing: pip install bitsandbytes")
    train, valid = examples
    run = tmp_path / "qlora"
    finetune(
        run_config(tiny_model, run, "train.max_steps=12", "train.quantization=nf4"),
        str(tiny_model),
        train.select(range(8)),
        valid,
        log=lambda _: None,
    )
    curve = losses(run)
    assert sum(curve[-3:]) / 3 < curve[0] - 0.1


def test_interrupted_run_resumes_to_the_same_adapter(tiny_model, examples, tmp_path):
    """With dropout on: the checkpoint carries the random state, so the resumed steps drop the
    same units as the uninterrupted run's."""
    from safetensors.torch import load_file

    train, valid = examples
    straight = tmp_path / "straight"
    finetune(
        run_config(tiny_model, straight, "train.max_steps=4", "train.save_every=2", "lora.dropout=0.1"),
        str(tiny_model),
        train,
        valid,
        log=lambda _: None,
    )
    broken = tmp_path / "broken"

    def crash_at_step_3(line: str) -> None:  # after the step-2 checkpoint, before step 3's
        if line.startswith("step=3 "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(
            run_config(tiny_model, broken, "train.max_steps=4", "train.save_every=2", "lora.dropout=0.1"),
            str(tiny_model),
            train,
            valid,
            log=crash_at_step_3,
        )
    assert not (broken / "adapter").exists()
    with pytest.raises(ConfigError, match="pass --resume"):
        finetune(run_config(tiny_model, broken, "train.max_steps=4"), str(tiny_model), train, valid, log=lambda _: None)
    metrics = finetune(
        run_config(tiny_model, broken, "train.max_steps=4", "train.save_every=2", "lora.dropout=0.1"),
        str(tiny_model),
        train,
        valid,
        resume=True,
        log=lambda _: None,
    )
    assert metrics["step"] == 4
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(broken / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert sorted(p.name for p in (broken / "checkpoints").iterdir()) == ["step-2", "step-4"]


def test_lora_targets_that_do_not_exist_are_named(tiny_model, examples, tmp_path):
    train, valid = examples
    with pytest.raises(ValueError, match="lora.target_modules"):
        finetune(
            run_config(tiny_model, tmp_path / "x", "lora.target_modules=[nope_proj]"),
            str(tiny_model),
            train,
            valid,
            log=lambda _: None,
        )


def test_cli_finetune_generate_evaluate_export(tiny_model, tiny_data, tmp_path, capsys):
    """The task 3 verbs chained as a user runs them, on the built-in tiny data."""
    import polars as pl

    from llmrec.cli.main import main

    run = tmp_path / "run"
    common = [
        f"model={tiny_model}",
        f"data={tiny_data}",
        "prompt.history=2",
        "generate.max_new_tokens=6",
        "lora.layers=[]",
    ]
    main(
        [
            "finetune",
            "--task",
            "3",
            *common,
            f"train.out={run}",
            "train.max_steps=3",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.eval_every=3",
            "train.eval_sessions=4",
            "train.train_sessions=64",
            "lora.r=4",
        ]
    )
    assert (run / "adapter" / "adapter_config.json").exists() and "adapter:" in capsys.readouterr().out
    titles = tmp_path / "titles.parquet"
    main(
        [
            "generate",
            "--task",
            "3",
            "--backend",
            "hf",
            "--adapter",
            str(run / "adapter"),
            "--data",
            str(tiny_data),
            "--limit",
            "5",
            "--out",
            str(titles),
            "generate.max_new_tokens=6",
        ]
    )  # model, prompt and split: the adapter's
    saved = load_config(Task3Config, tmp_path / "titles.config.yaml")
    assert saved.prompt.history == 2 and saved.model == str(tiny_model) and "warning" not in capsys.readouterr().out
    main(
        [
            "generate",
            "--task",
            "3",
            "--backend",
            "hf",
            "--adapter",
            str(run / "adapter"),
            "--data",
            str(tiny_data),
            "--limit",
            "2",
            "--out",
            str(tmp_path / "other.parquet"),
            "prompt.history=3",
            "split.seed=1",
            "generate.max_new_tokens=6",
        ]
    )
    printed = capsys.readouterr().out
    assert "prompt.history: trained 2, now 3" in printed and "split.seed: trained 0, now 1" in printed
    assert "sessions this split holds out" in printed
    frame = pl.read_parquet(titles)
    assert frame.columns == ["session_id", "locale", "next_item_title", "candidates"] and frame.height == 5
    report = json.loads((tmp_path / "titles.report.json").read_text())
    assert (
        (tmp_path / "titles.config.yaml").exists()
        and report["throughput"]["prompts"] == 5
        and 0 <= report["metrics"]["overall"]["bleu"] <= 1
    )
    main(
        [
            "generate",
            "--task",
            "1",
            "--backend",
            "hf",
            "--data",
            str(tiny_data),
            "--limit",
            "3",
            "--out",
            str(tmp_path / "t1.parquet"),
            *common,
        ]
    )
    assert set(pl.read_parquet(tmp_path / "t1.parquet")["locale"]) <= {"UK", "DE", "JP"}
    main(["export", "--adapter", str(run / "adapter"), "--out", str(tmp_path / "merged")])
    assert (tmp_path / "merged" / "config.json").exists()


def test_transfer_continues_an_adapter_on_chosen_locales(tiny_model, tiny_data, tmp_path):
    """Task 2 transfer: an adapter trained on UK/DE/JP, trained further on ES/FR/IT only."""
    from llmrec.train.data import training_prompts
    from tests.helpers import tiny_tokenizer

    big = run_config(
        tiny_model,
        tmp_path / "big",
        f"data={tiny_data}",
        "train.max_steps=2",
        "train.locales=[UK,DE,JP]",
        "train.eval_sessions=4",
    )
    train, valid = training_prompts(big, tiny_tokenizer(["x"]))
    assert set(train["locale"]) == {"UK", "DE", "JP"} and set(valid["locale"]) <= {"UK", "DE", "JP"}
    finetune(big, str(tiny_model), train, valid, log=lambda _: None)
    small = run_config(
        tiny_model,
        tmp_path / "small",
        f"data={tiny_data}",
        "train.max_steps=2",
        "train.locales=[ES,FR,IT]",
        f"train.init_adapter={tmp_path / 'big' / 'adapter'}",
        "lora.r=4",
        "train.eval_sessions=4",
    )
    train, valid = training_prompts(small, tiny_tokenizer(["x"]))
    assert set(train["locale"]) == {"ES", "FR", "IT"}
    finetune(small, str(tiny_model), train, valid, log=lambda _: None)
    from safetensors.torch import load_file

    before, after = (
        load_file(tmp_path / "big" / "adapter" / "adapter_model.safetensors"),
        load_file(tmp_path / "small" / "adapter" / "adapter_model.safetensors"),
    )
    assert (
        before.keys() == after.keys() and next(iter(after.values())).shape[0] == 8
    )  # the adapter's own rank 8, not lora.r=4
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="unknown locale 'XX'"):
        training_prompts(
            run_config(tiny_model, tmp_path / "x", f"data={tiny_data}", "train.locales=[XX]"), tiny_tokenizer(["x"])
        )


def test_batch_plan_groups_lengths_covers_each_epoch_and_replays():
    from llmrec.train.finetune import BatchPlan

    lengths = list(np.random.default_rng(0).integers(5, 200, 640))
    plan = BatchPlan(lengths, batch_size=4, seed=3)
    epoch = [plan(step) for step in range(plan.per_epoch)]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(640))  # every example once per epoch
    spread = np.mean([np.ptp(np.asarray(lengths)[b]) for b in epoch])
    assert spread < 0.25 * np.ptp(lengths)  # batches of similar lengths
    assert not np.array_equal(plan(plan.per_epoch), epoch[0])  # a new order next epoch
    again = BatchPlan(lengths, batch_size=4, seed=3)
    assert all(np.array_equal(again(s), plan(s)) for s in (7, 200, 3, plan.per_epoch + 5))  # any step, any order


def test_lora_on_chosen_layers_only(tiny_model, examples, tmp_path):
    from safetensors.torch import load_file

    train, valid = examples
    run = tmp_path / "top"
    finetune(
        run_config(tiny_model, run, "train.max_steps=2", "lora.layers=[1]", "lora.num_layers=2"),
        str(tiny_model),
        train.select(range(8)),
        valid,
        log=lambda _: None,
    )
    keys = load_file(run / "adapter" / "adapter_model.safetensors").keys()
    assert keys and all(".layers.1." in k for k in keys)


def test_finetune_by_config_name_from_any_folder_uses_the_shipped_recipe(tiny_model, tiny_data, tmp_path, monkeypatch):
    """`llmrec finetune --task 3 --config task3` run outside the repository trains with exactly
    the shipped recipe (plus the command line's overrides), not the dataclass defaults."""
    from llmrec.cli.main import main
    from llmrec.config import SHIPPED, to_dict

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    overrides = [
        f"model={tiny_model}",
        f"data={tiny_data}",
        f"train.out={out}",
        "train.max_steps=1",
        "train.eval_sessions=2",
        "lora.layers=[1]",
        "lora.num_layers=2",
        "generate.max_new_tokens=4",
    ]
    main(["finetune", "--task", "3", "--config", "task3", *overrides])
    saved = load_config(Task3Config, out / "config.yaml")
    assert saved == load_config(Task3Config, SHIPPED / "task3.yaml", overrides)
    assert to_dict(saved) != to_dict(
        load_config(Task3Config, None, overrides)
    )  # the recipe really departs from the defaults


def test_a_run_folder_is_only_continued_with_its_own_settings(tiny_model, examples, tmp_path):
    """Resuming (or the demo reusing an adapter) with settings that change the weights is
    refused with one line; settings that only change logging or saving may differ."""
    from llmrec.train.finetune import check_run_folder

    train, valid = examples
    run = tmp_path / "run"
    finetune(
        run_config(tiny_model, run, "train.max_steps=2", "train.save_every=1"),
        str(tiny_model),
        train,
        valid,
        log=lambda _: None,
    )
    check_run_folder(run, run_config(tiny_model, run, "train.max_steps=2", "train.save_every=5", "train.log_every=3"))
    with pytest.raises(ConfigError, match=r"other settings \(train.lr: 0.02 there, 0.01 now\)"):
        check_run_folder(run, run_config(tiny_model, run, "train.max_steps=2", "train.lr=0.01"))
    with pytest.raises(ConfigError, match="other settings"):
        finetune(
            run_config(tiny_model, run, "train.max_steps=4", "lora.r=4"),
            str(tiny_model),
            train,
            valid,
            resume=True,
            log=lambda _: None,
        )


def test_layer_subsets_fit_only_the_model_they_were_chosen_for(tiny_model, examples, tmp_path):
    train, valid = examples
    with pytest.raises(ConfigError, match=r"chosen for a model of 18 layers .* has 2"):
        finetune(
            run_config(tiny_model, tmp_path / "a", "lora.layers=[9,10]", "lora.num_layers=18"),
            str(tiny_model),
            train,
            valid,
        )
    with pytest.raises(ConfigError, match="does not state"):
        finetune(run_config(tiny_model, tmp_path / "b", "lora.layers=[1]"), str(tiny_model), train, valid)
    finetune(
        run_config(tiny_model, tmp_path / "c", "lora.layers=[1]", "lora.num_layers=2", "train.max_steps=1"),
        str(tiny_model),
        train.select(range(4)),
        valid,
        log=lambda _: None,
    )
