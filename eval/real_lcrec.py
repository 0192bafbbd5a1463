"""Real titles: llmrec on an LC-Rec / TIGER-format review dataset (Amazon 2018 Industrial &
Scientific), the papers' protocol (leave-one-out, whole catalogue, HR@5/10 and NDCG@5/10 on
every test user), one row per method beside the ID-only baselines. The protocol lets a method
rank history items; every method here leaves them out (`split.exclude_history`, the default),
because no user's next item repeats one of theirs in this data (checked, and printed).

Every step is an `llmrec` verb on the imported folder, run as a user would (its outputs and
resolved configs land under --out, and a rerun reuses what is there):

- import: `llmrec data import lcrec`;
- ID-only rows: `llmrec baseline popularity|covisit|sknn|sasrec --split test`, SASRec with the
  settings of SASREC_CHOICES that rank the validation users best (`--split valid`);
- the last title grounded: e5 neighbours of the last item (`recommend`, fusion of the content
  source alone), what an LLM that only copies the last title reaches after grounding;
- hybrid (ids + text): `llmrec recommend --split test`, LightGBM over co-visitation, SKNN,
  SASRec and text neighbours, learned on the validation sessions, with the LightGBM settings
  that rank the validation users best (cross-fitted; RERANKER_CHOICES); the same without
  SASRec; and the sources fused by reciprocal ranks with weights set by hand (nothing learned);
- with --llm-steps N > 0, the LLM rows: `llmrec finetune --task 3` for N steps (LoRA), titles
  for the validation and test users (`llmrec generate`), their BLEU beside the last title's and
  co-visitation's top item's (overall and by history length), "LLM grounded" (the generated
  titles grounded by e5 + faiss, BIGRec-style), "LLM constrained" (beam search over the
  catalogue's titles, `generate.decoding=constrained`, each beam's product first, then their e5
  neighbours), the hybrid with the LLM's grounded titles as a source and features, learned from
  titles generated for its own training (validation) sessions, and the hybrid with the LLM as a
  reranker: the LLM's log-likelihood of the titles of the top --rescore-top products of the
  ranking without it (`generate --lists ... generate.decoding=score`) as features, for the
  validation users (their cross-fitted lists) and the test users alike.

Each row prints its training budget: steps and CPU minutes of the verbs behind it.

    python eval/real_lcrec.py --data ../shared/data/amazon-scientific-2018 --llm-steps 300

On a GPU, longer training with every layer adapted:

    python eval/real_lcrec.py --data ... --llm-steps 3000 --finetune-config task3-gpu --lora
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

CUTOFFS = ("hr@5", "hr@10", "ndcg@5", "ndcg@10")
# SASRec settings tried on the validation users (`baseline sasrec --split valid`, trained on the
# training windows only); the best NDCG@10 there is used on the test users.
SASREC_CHOICES = {
    "defaults (dropout 0.2, 20 epochs)": [],
    "dropout 0.5, 20 epochs": ["dropout=0.5"],
    "dropout 0.5, 30 epochs": ["dropout=0.5", "epochs=30"],
}
# Inside a hybrid SASRec is fitted twice (for the validation users it learns from, then for the
# test users) and is one source among several: a shorter training keeps the run within budget.
HYBRID_SASREC_EPOCHS = 12
# LightGBM settings tried on the validation users (cross-fitted, `recommend --split valid`); the
# best NDCG@10 there is used on the test users. With M2's default, which trains on the true item
# and 60 negatives that the sources rank high first, the model learns from candidates unlike the
# ones it ranks: here that left it below co-visitation.
RERANKER_CHOICES = {
    "default (60 negatives, hard ones first)": [],
    "every candidate": ["reranker.negatives=0"],
    "every candidate, small trees": [
        "reranker.negatives=0",
        "reranker.num_leaves=7",
        "reranker.min_child_samples=200",
    ],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def llmrec(*args: str, log: Path) -> float:
    """Runs one verb (output to `log`), returns its CPU seconds."""
    before = children_cpu()
    with log.open("a") as stream:
        stream.write(f"\n$ llmrec {' '.join(args)}\n")
        stream.flush()
        done = subprocess.run([sys.executable, "-m", "llmrec", *args], stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"llmrec {args[0]} failed (exit {done.returncode}); see {log}")
    return children_cpu() - before


def find_inputs(folder: Path) -> tuple[Path, Path]:
    inter, items = sorted(folder.glob("*.inter.json")), sorted(folder.glob("*.item.json"))
    if len(inter) != 1 or len(items) != 1:
        raise SystemExit(f"{folder}: expected one *.inter.json and one *.item.json")
    return inter[0], items[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/amazon-scientific-2018"))
    parser.add_argument("--out", type=Path, default=Path("runs/real-lcrec"))
    parser.add_argument(
        "--llm-steps", type=int, default=0, help="LoRA steps for the LLM rows (0: ID and text rows only)"
    )
    parser.add_argument("--model", default="smollm2-135m", help="base LLM (a default model, folder or hub id)")
    parser.add_argument("--backend", default="vllm", help="generation backend: vllm or hf")
    parser.add_argument(
        "--finetune-config",
        default="task3",
        help="finetuning recipe: task3 (two CPU cores) or task3-gpu (every layer, batch 32, bf16; with --lora and "
        "no values, and more --llm-steps)",
    )
    parser.add_argument(
        "--lora",
        nargs="*",
        default=["lora.layers=[15,16,17,18,19,20,21,22,23,24,25,26,27,28,29]", "lora.num_layers=30"],
        help="LoRA overrides (default: the top half of SmolLM2-135M's 30 layers, which halves the backward pass)",
    )
    parser.add_argument("--llm-minutes", type=float, default=0, help="stop finetuning after this long (0: no limit)")
    parser.add_argument(
        "--no-llm-hybrid",
        dest="llm_hybrid",
        action="store_false",
        help="skip the hybrids with LLM features (they need titles for the validation users too: a second pass)",
    )
    parser.add_argument(
        "--rescore-top",
        type=int,
        default=20,
        help="the hybrid's LLM reranking: the LLM's log-likelihood of the titles of this many products at the top "
        "of the ranking without it (generate.decoding=score), as features",
    )
    parser.add_argument(
        "--constrained-backend",
        default="hf",
        help="backend of the constrained row: hf (its trie-shaped cache: 4.4x vLLM's engine loop on two CPU cores, "
        "eval/bench_constrained.py) or vllm",
    )
    parser.add_argument("--beams", type=int, default=10, help="beams (titles per user) of the constrained row")
    parser.add_argument(
        "--valid-users", type=int, default=0, help="titles for the first N validation users only (0: all)"
    )
    args = parser.parse_args()
    out, log = args.out, args.out / "llmrec.log"
    out.mkdir(parents=True, exist_ok=True)
    folder = out / "data"
    earlier = out / "results.json"  # a rerun reuses outputs, and reports their budgets
    budget: dict[str, str] = json.loads(earlier.read_text())["budget"] if earlier.exists() else {}
    started = time.perf_counter()
    if not (folder / "dataset.yaml").exists():
        inter, items = find_inputs(args.data)
        llmrec("data", "import", "lcrec", "--inter", str(inter), "--items", str(items), "--out", str(folder), log=log)

    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.evaluate import evaluate

    test = load_task_split(AmazonM2(folder), 1, SplitConfig(name="test"))
    repeats = test.sessions.with_columns(next_item=test.targets).select(
        pl.col("prev_items").list.contains(pl.col("next_item"))
    )
    print(
        f"test users whose next item is in their history: {int(repeats.to_series().sum())} of {test.sessions.height:,}"
    )
    rows: dict[str, dict] = {}

    def score(name: str, path: Path) -> None:
        lists = pl.read_parquet(path)
        rows[name] = evaluate(1, lists, test.targets, test.sessions["locale"])["overall"]
        report = path.with_name(path.stem + ".report.json")
        if name not in budget and report.exists() and "seconds" in json.loads(report.read_text()):
            budget[name] = f"{json.loads(report.read_text())['seconds'] / 60:.1f} min wall (an earlier run)"

    common = ["--task", "1", "--data", str(folder), "--split", "test"]
    sasrec, sasrec_selection = pick_sasrec(folder, out, log, budget)
    for name, label, extra in [
        ("popularity", "popularity", []),
        ("covisit", "co-visitation", []),
        ("sknn", "SKNN", []),
        (f"sasrec-{settings_name(sasrec)}", "SASRec", [f"baseline.sasrec.{s}" for s in sasrec]),
    ]:
        path = out / f"{name}.parquet"
        if not path.exists():
            cpu = llmrec("baseline", name.split("-")[0], *common, "--out", str(path), *extra, log=log)
            budget[label] = f"{cpu / 60:.1f} CPU min" + (f" ({', '.join(sasrec) or 'defaults'})" if extra else "")
        score(label, path)

    recommend = ["recommend", *common, "reranker.threads=2", "reranker.deterministic=true"]
    reranker, selection = pick_reranker(folder, out, log, budget)
    last = out / "last-title-grounded.parquet"
    if not last.exists():
        cpu = llmrec(
            *recommend,
            "--out",
            str(last),
            "reranker.kind=fusion",
            "reranker.fusion_weights={content: 1.0}",
            "candidates.content_top=100",
            log=log,
        )
        budget["last title grounded (e5)"] = f"{cpu / 60:.1f} CPU min (catalogue embeddings)"
    score("last title grounded (e5)", last)

    hybrid_sasrec = [s for s in sasrec if not s.startswith("epochs=")] + [f"epochs={HYBRID_SASREC_EPOCHS}"]
    sasrec_source = ["candidates.sasrec_top=100", *[f"candidates.sasrec.{s}" for s in hybrid_sasrec]]
    recommend += reranker
    without_sasrec = out / "lightgbm-ids-text.parquet"
    label = "LightGBM: ids + text, no SASRec (no LLM)"
    if not without_sasrec.exists():
        cpu = llmrec(*recommend, "--out", str(without_sasrec), log=log)
        budget[label] = f"{cpu / 60:.1f} CPU min (LightGBM)"
    score(label, without_sasrec)
    hybrid = out / "hybrid-ids-text.parquet"
    if not hybrid.exists():
        cpu = llmrec(*recommend, "--out", str(hybrid), *sasrec_source, log=log)
        budget["hybrid: ids + text (no LLM)"] = f"{cpu / 60:.1f} CPU min (SASRec twice, 12 epochs; LightGBM)"
    score("hybrid: ids + text (no LLM)", hybrid)

    # Reciprocal-rank fusion of the strongest sources, weights set by hand, nothing learned.
    fused = out / "fusion-sasrec-covisit-text.parquet"
    label = "fusion: SASRec + co-visitation + text (no training)"
    if not fused.exists():
        weights = "reranker.fusion_weights={sasrec: 1.0, covisit: 1.0, content: 0.5}"
        cpu = llmrec(*recommend, "--out", str(fused), "reranker.kind=fusion", weights, *sasrec_source, log=log)
        budget[label] = f"{cpu / 60:.1f} CPU min (SASRec once, 12 epochs)"
    score(label, fused)

    bleu = {}
    if args.llm_steps:
        # the ranking without SASRec or the LLM, of the validation users (cross-fitted) and the test users
        chosen = out / "reranker-selection" / f"choice-{list(RERANKER_CHOICES).index(selection['used'])}.parquet"
        first_stage = {"valid": chosen, "test": without_sasrec}
        bleu = llm_rows(args, folder, out, log, recommend, sasrec_source, first_stage, budget, score)

    print_table(rows, budget, out, test.sessions.height, time.perf_counter() - started)
    if bleu:
        print_bleu(bleu)
    results = {
        "rows": rows,
        "budget": budget,
        "bleu": bleu,
        "sasrec_selection": sasrec_selection,
        "reranker_selection": selection,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))


def settings_name(settings: list[str]) -> str:
    """A file name part for a list of `key=value` overrides."""
    return "_".join(s.replace("=", "") for s in settings) or "defaults"


def pick_sasrec(folder: Path, out: Path, log: Path, budget: dict) -> tuple[list[str], dict]:
    """The SASREC_CHOICES settings with the best NDCG@10 on the validation users."""

    def run(path: Path, settings: list[str]) -> list[str]:
        return ["baseline", "sasrec", "--out", str(path), *[f"baseline.sasrec.{s}" for s in settings]]

    return pick_on_validation("SASRec", "sasrec-selection", SASREC_CHOICES, run, folder, out, log, budget)


def pick_reranker(folder: Path, out: Path, log: Path, budget: dict) -> tuple[list[str], dict]:
    """The LightGBM settings of RERANKER_CHOICES with the best cross-fitted NDCG@10 on the
    validation users."""

    def run(path: Path, settings: list[str]) -> list[str]:
        return ["recommend", "--out", str(path), "reranker.threads=2", "reranker.deterministic=true", *settings]

    return pick_on_validation("reranker", "reranker-selection", RERANKER_CHOICES, run, folder, out, log, budget)


def pick_on_validation(
    what: str, subfolder: str, choices: dict, command, folder: Path, out: Path, log: Path, budget: dict
) -> tuple[list[str], dict]:
    """Runs `command(path, settings)` (an llmrec verb writing lists) for every choice on the
    validation users (the test users are not looked at) and returns the settings with the best
    NDCG@10 there, with every choice's score."""
    scores = {}
    for number, (name, settings) in enumerate(choices.items()):
        path = out / subfolder / f"choice-{number}.parquet"
        if not path.exists():
            verb, *rest = command(path, settings)
            cpu = llmrec(verb, *rest, "--task", "1", "--data", str(folder), "--split", "valid", log=log)
            budget[f"{what} selection: {name}"] = f"{cpu / 60:.1f} CPU min"
        metrics = json.loads(path.with_name(path.stem + ".report.json").read_text())["metrics"]["overall"]
        scores[name] = round(metrics["ndcg@10"], 4)
    best = max(scores, key=scores.get)
    print(f"{what} settings, NDCG@10 of the validation users: ", end="")
    print(", ".join(f"{name} {score:.4f}" for name, score in scores.items()) + f"; used: {best}")
    return choices[best], {"validation ndcg@10": scores, "used": best}


def llm_rows(args, folder, out, log, recommend, sasrec_source, first_stage, budget, score) -> dict:
    """Finetune, generate, then the LLM-only and hybrid rows; returns the BLEU breakdown."""
    adapter_run = out / f"lora-{args.model}-{args.llm_steps}"
    if not (adapter_run / "adapter").exists():
        cpu = llmrec(
            "finetune",
            *("--task", "3", "--config", args.finetune_config, f"data={folder}", f"model={args.model}"),
            *(f"train.out={adapter_run}", f"train.max_steps={args.llm_steps}", f"train.max_minutes={args.llm_minutes}"),
            *args.lora,
            log=log,
        )
        steps = max(json.loads(line)["step"] for line in (adapter_run / "train_log.jsonl").read_text().splitlines())
        budget["LLM finetune"] = f"{steps} steps, {cpu / 60:.1f} CPU min ({args.model})"
    adapter = str(adapter_run / "adapter")

    def titles(split: str, name: str, *settings: str, backend: str = args.backend) -> Path:
        path = out / f"{name}.parquet"
        if not path.exists():
            limit = ["--limit", str(args.valid_users)] if split == "valid" and args.valid_users else []
            cpu = llmrec(
                *("generate", "--task", "1", "--backend", backend, "--adapter", adapter, "--data", str(folder)),
                *("--split", split, "--out", str(path), *limit, *settings),
                log=log,
            )
            budget[name] = f"{cpu / 60:.1f} CPU min"
        return path

    def grounded_row(label: str, generated: Path) -> None:
        path = out / f"{label.lower().replace(' ', '-')}.parquet"
        if not path.exists():
            cpu = llmrec(
                *(*recommend, "--out", str(path), "--titles", str(generated), "reranker.kind=fusion"),
                *("reranker.fusion_weights={grounded: 1.0}", "candidates.grounded_top=100"),
                log=log,
            )
            budget[label] = f"{cpu / 60:.1f} CPU min (grounding) + finetune + {generated.stem}"
        score(label, path)

    test_titles = titles("test", "titles-test")
    bleu = title_bleu(folder, test_titles, out / "covisit.parquet")
    grounded_row("LLM grounded", test_titles)
    beams = [f"generate.num_beams={args.beams}", f"generate.num_candidates={args.beams}"]
    constrained = titles(
        "test", "titles-test-constrained", "generate.decoding=constrained", *beams, backend=args.constrained_backend
    )
    grounded_row("LLM constrained", constrained)
    if args.llm_hybrid:
        hybrid = out / "hybrid-llm.parquet"
        if not hybrid.exists():
            valid_titles = titles("valid", "titles-valid")
            cpu = llmrec(
                *(*recommend, "--out", str(hybrid), "--titles", str(test_titles)),
                *("--valid-titles", str(valid_titles), *sasrec_source),
                log=log,
            )
            budget["hybrid: ids + text + LLM"] = f"{cpu / 60:.1f} CPU min + finetune + titles"
        score("hybrid: ids + text + LLM", hybrid)
        # The LLM reranks the first stage: the titles of its top products scored by their log-likelihood.
        rescored = out / "hybrid-llm-rescored.parquet"
        if not rescored.exists():
            scoring = ["generate.decoding=score", f"generate.num_candidates={args.rescore_top}"]
            scored = {
                split: titles(split, f"scored-{split}-top{args.rescore_top}", "--lists", str(lists), *scoring)
                for split, lists in first_stage.items()
            }
            cpu = llmrec(
                *(*recommend, "--out", str(rescored), "--titles", str(scored["test"])),
                *("--valid-titles", str(scored["valid"]), *sasrec_source, "text.ground.top_k=10"),
                log=log,
            )
            budget["hybrid: ids + text + LLM reranking"] = f"{cpu / 60:.1f} CPU min + finetune + scored titles"
        score("hybrid: ids + text + LLM reranking", rescored)
    return bleu


def title_bleu(folder: Path, titles: Path, covisit_lists: Path) -> dict:
    """Corpus BLEU-4 of the generated next titles, the last title and the title of the top item
    of co-visitation's lists (the baseline's submission, already written), overall and by
    history length."""
    from llmrec.baselines.last_title import last_titles
    from llmrec.data.dataset import AmazonM2
    from llmrec.data.split import SplitConfig, load_task_split
    from llmrec.metrics import corpus_bleu

    split = load_task_split(AmazonM2(folder), 3, SplitConfig(name="test"))
    ids = load_task_split(AmazonM2(folder), 1, SplitConfig(name="test"))
    generated = pl.read_parquet(titles).select("session_id", "next_item_title")
    generated = split.sessions.select("session_id").join(generated, on="session_id", how="left", maintain_order="left")
    # The lists follow the task 1 test sessions; task 3 keeps those whose next item has a title.
    top = ids.sessions.select("session_id", pl.read_parquet(covisit_lists)["next_item_prediction"].list.first())
    covisit = split.sessions.select("session_id").join(top, on="session_id", how="left", maintain_order="left")
    covisit = covisit["next_item_prediction"].fill_null("")
    catalog = dict(zip(split.catalog["id"], split.catalog["title"]))
    methods = {
        "finetuned LLM": generated["next_item_title"].fill_null("").to_list(),
        "last title": last_titles(split.sessions, split.catalog).fill_null("").to_list(),
        "co-visitation's top item's title": [catalog.get(i, "") for i in covisit.to_list()],
    }
    lengths = split.sessions["prev_items"].list.len().to_numpy()
    groups = {
        "all": lengths >= 0,
        "4": lengths == 4,
        "5": lengths == 5,
        "6-7": (lengths >= 6) & (lengths <= 7),
        "8-10": (lengths >= 8) & (lengths <= 10),
        "11+": lengths >= 11,
    }
    targets = split.targets.to_list()
    table = {}
    for name, hypotheses in methods.items():
        table[name] = {}
        for group, mask in groups.items():
            chosen = [i for i in range(len(targets)) if mask[i]]
            table[name][f"{group} (n={len(chosen)})"] = corpus_bleu(
                [hypotheses[i] for i in chosen], [targets[i] for i in chosen]
            )
    return table


def print_table(rows: dict, budget: dict, out: Path, users: int, seconds: float) -> None:
    best_ids = max(rows[n]["ndcg@10"] for n in ("popularity", "co-visitation", "SKNN", "SASRec"))
    print(f"\n{users:,} test users, whole catalogue, history items left out ({out}, {seconds / 60:.0f} min wall)")
    cells = {
        name: {
            **{c.upper(): f"{metrics[c]:.4f}" for c in CUTOFFS},
            "NDCG@10 / best ID-only": f"{metrics['ndcg@10'] / best_ids:.2f}x",
            "budget": budget.get(name, "reused"),
        }
        for name, metrics in rows.items()
    }
    print_markdown("method", cells)
    for name, spent in budget.items():
        if name not in rows:
            print(f"{name}: {spent}")


def print_bleu(bleu: dict) -> None:
    print("\nnext-title corpus BLEU-4 (sacrebleu 13a), test users, by history length")
    print_markdown("titles", {name: {g: f"{v:.4f}" for g, v in values.items()} for name, values in bleu.items()})


def print_markdown(corner: str, rows: dict[str, dict]) -> None:
    """A markdown table: one row per key of `rows`, its dict's keys as the columns (the first row's)."""
    columns = list(next(iter(rows.values())))
    print(f"| {corner} | {' | '.join(columns)} |")
    print("|---|" + "---|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | {' | '.join(str(row[c]) for c in columns)} |")


if __name__ == "__main__":
    main()
