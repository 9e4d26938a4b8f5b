"""python -m ablate.report runs/<study>: tables, Pareto front, figures and summary of a study.

`write_report(out_dir)` reads the study back from the storage named in `out_dir/meta.json` and
writes, into `out_dir`:

- `runs.csv` / `runs.parquet`: one row per finished trial and seed (lists and dicts as JSON),
  every value as measured;
- `configs.csv` / `configs.parquet`: one row per configuration, each scalar metric's mean over
  seeds and its 95 % Student-t interval (NaN width when a configuration has one seed), plus
  `feasible` (meets the spec's constraints and every seed learned), `pareto` (on the front
  of the objectives) and `near_front` (off it, but clearly beaten by none on it: `near_front`);
- `pareto_front.csv` / `.parquet`: the front alone;
- `figures/*.png` and `*.svg`; `summary.md`; `report.html` (self-contained).

In the tables on file a field a run does not use (`report_table.unused_cells`: the filter of a
network without blur) is blank, and `config_key`, the configuration's identity, comes last.

A run that did not learn (`learned` false: accuracy not above chance, `ablate.chance`) keeps its
row in `runs.*`, but its consistency and accuracy-vs-shift curve are left out of every mean,
figure and answer, and its configuration is infeasible, as the engine told Optuna; its
accuracy, adversarial accuracy, filter smoothness and costs are kept, and each answer says how
many such runs it left out or counted.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ablate import report_figures as figs
from ablate.near_front import near_front
from ablate.pareto import pareto_mask
from ablate.report_choices import choice_answers
from ablate.report_groups import BLUR, NO_BLUR, blur_groups
from ablate.report_questions import Answer, answer_questions, cost_answers, polyphase_answers
from ablate.report_summary import (
    Block,
    Bullets,
    FigureBlock,
    Heading,
    Paragraph,
    Table,
    write_documents,
)
from ablate.report_table import (
    CONFIG_KEY,
    FAILURE_COLUMNS,
    NETWORK_KEY,
    StudyMeta,
    aggregate_over_seeds,
    at_chance,
    failed_trials,
    first_run_per_seed,
    load_study,
    mask_runs_at_chance,
    read_meta,
    runs_table,
    study_location,
    unused_cells,
    varied_fields,
    write_table,
)
from ablate.storage import StorageLocation
from ablate.trial_queue import QueueStatus, queue_status
from ablate.variant_config import UNUSED_FIELDS_TEXT, VariantConfig

FIGURE_DIR = "figures"


def mark_front(configs: pd.DataFrame, meta: StudyMeta) -> pd.DataFrame:
    """Add `feasible` (every constraint holds on the means and no seed is at chance) and `pareto`
    (non-dominated among the feasible configurations on the objectives' means, as Optuna's
    `best_trials` decides)."""
    marked = configs.copy()
    feasible = marked["seeds_at_chance"].eq(0)
    for constraint in meta.constraints:
        column = f"{constraint.metric}_mean"
        if column in marked:
            feasible &= marked[column].map(constraint.holds).astype(bool)
        else:
            feasible &= False
    marked["feasible"] = feasible
    columns = [f"{o.metric}_mean" for o in meta.objectives]
    marked["pareto"] = False
    if all(c in marked for c in columns) and feasible.any():
        front = pareto_mask(marked[feasible], columns, [o.direction for o in meta.objectives])
        marked.loc[front.index, "pareto"] = front
    return marked


def consistency_metric_of(meta: StudyMeta) -> str:
    """The consistency the study optimised, else the circular one."""
    return next(
        (o.metric for o in meta.objectives if o.metric.startswith("consistency_")),
        "consistency_circular",
    )


def _interval_text(row: pd.Series, metric: str) -> str:
    """'mean [low, high]', and '(n = k)' where fewer seeds than the row's measured it."""
    mean = row.get(f"{metric}_mean")
    if mean is None or pd.isna(mean):
        return "n/a"
    low, high = row.get(f"{metric}_ci95_low"), row.get(f"{metric}_ci95_high")
    text = f"{mean:.4g}" if low is None or pd.isna(low) else f"{mean:.4g} [{low:.4g}, {high:.4g}]"
    seeds = row.get(f"{metric}_n", row["n_seeds"])
    return text if seeds == row["n_seeds"] else f"{text} (n = {seeds})"


def front_table(configs: pd.DataFrame, varied: Sequence[str], meta: StudyMeta) -> pd.DataFrame:
    """The Pareto front, as :func:`config_table` lays it out."""
    front = configs[configs["pareto"]] if "pareto" in configs else configs.iloc[0:0]
    return config_table(front, varied, meta)


def all_configs_table(
    configs: pd.DataFrame, varied: Sequence[str], meta: StudyMeta
) -> pd.DataFrame:
    """Every configuration, best first by the first objective, marked where on the front, or
    why it cannot be (a seed that did not learn makes it infeasible): to compare any two, not
    only the front's."""
    first = meta.objectives[0]
    ordered = configs.sort_values(
        f"{first.metric}_mean", ascending=first.direction == "minimize", na_position="last"
    )
    table = config_table(ordered, varied, meta)
    table.insert(0, "front", [_front_cell(row) for _, row in ordered.iterrows()])
    return table


def _near_front_note(configs: pd.DataFrame) -> str:
    """How many configurations off the front it does not clearly beat (`near_front`); nothing
    without a front, or with no feasible configuration off it."""
    if "near_front" not in configs or not configs["pareto"].any():
        return ""
    off = configs["feasible"] & ~configs["pareto"]
    if not off.any():
        return ""
    near = int(configs["near_front"].sum())
    if not near:
        return (
            "Every feasible configuration off the front is clearly beaten by one on it: ahead "
            "on an objective by a 95 % interval (paired by seed) that excludes zero, and no "
            "worse on the others' means."
        )
    return (
        f"{near} of the {int(off.sum())} feasible configurations off the front "
        f"{'is' if near == 1 else 'are'} near it (≈ below): no configuration on the front is "
        "ahead of them on an objective by a 95 % interval (paired by seed) that excludes zero "
        "while no worse on the others' means, so the study cannot tell them from its members; "
        "more seeds would."
    )


def _front_cell(row: pd.Series) -> str:
    """✓ on the front; ≈ near it (`near_front`); why an infeasible configuration cannot be
    (`mark_front`); else blank."""
    if row.get("pareto", False):
        return "✓"
    if row.get("near_front", False):
        return "≈"
    if row.get("feasible", True):
        return ""
    stuck = int(row.get("seeds_at_chance", 0))
    if stuck:
        return f"off: {stuck} of {int(row['n_seeds'])} seeds did not learn"
    return "off: a constraint does not hold"


def config_table(configs: pd.DataFrame, varied: Sequence[str], meta: StudyMeta) -> pd.DataFrame:
    """Configurations for reading: varied parameters, objectives as `mean [95 % CI]`, seeds."""
    rows = []
    for _, row in configs.iterrows():
        entry = _design_cells(row, varied)
        for objective in meta.objectives:
            arrow = "↑" if objective.direction == "maximize" else "↓"
            entry[f"{objective.metric} {arrow}"] = _interval_text(row, objective.metric)
        entry["seeds"] = row["n_seeds"]
        entry["trial numbers"] = row["trials"]
        rows.append(entry)
    return pd.DataFrame(rows)


def _design_cells(row: pd.Series, varied: Sequence[str]) -> dict[str, Any]:
    """The varied fields of a row, a field its network does not use (the filter of a network
    without blur, `unused_cells`) shown as "–"."""
    unused = unused_cells(row)
    return {column: "–" if column in unused else row.get(column) for column in varied}


def _design_table(rows: pd.DataFrame, varied: Sequence[str], first: list[str],
                  last: list[str]) -> pd.DataFrame:  # fmt: skip
    """`rows` for reading: the columns `first`, the varied fields as `_design_cells`, `last`."""
    return pd.DataFrame(
        [
            {**row[first].to_dict(), **_design_cells(row, varied), **row[last].to_dict()}
            for _, row in rows.iterrows()
        ],
        columns=list(dict.fromkeys([*first, *varied, *last])),
    )


def make_figures(
    study: optuna.Study, runs: pd.DataFrame, configs: pd.DataFrame, meta: StudyMeta
) -> list[figs.FigureOutcome]:
    """Every figure the report shows, in reading order (skipped ones carry a note); a filter
    has one colour in all of them."""
    consistency = consistency_metric_of(meta)
    palette = figs.study_palette(runs)
    return [
        figs.accuracy_consistency_figure(configs, consistency, meta.objectives, palette),
        figs.throughput_accuracy_figure(configs, meta.objectives, palette),
        figs.filter_size_figure(runs, consistency),
        figs.shift_curve_figure(runs, palette),
        figs.training_curve_figure(runs, palette),
        figs.filter_tv_figure(runs),
        figs.adversarial_figure(runs),
        figs.importance_figure(study, meta.objectives),
    ]


def _overview(
    meta: StudyMeta,
    all_runs: pd.DataFrame,
    runs: pd.DataFrame,
    configs: pd.DataFrame,
    failed: pd.DataFrame,
    varied: Sequence[str],
    config_cols: Sequence[str],
) -> Bullets:
    """The study at a glance; `runs` are the counted ones among `all_runs` (first_run_per_seed)."""
    repeated = len(all_runs) - len(runs)
    objectives = ", ".join(f"`{o.metric}` ({o.direction})" for o in meta.objectives)
    # a field no configuration's runs use (epochs where steps are set) is not listed at all
    unused = set.intersection(*[set(unused_cells(row)) for _, row in configs.iterrows()] or [set()])
    fixed = {
        c: configs[c].iloc[0]
        for c in config_cols
        if c not in varied and c not in unused and c in configs and len(configs)
    }
    chosen = [f"{c}={v}" for c, v in fixed.items() if not _is_default(c, v)]
    defaults = [f"{c}={v}" for c, v in fixed.items() if _is_default(c, v)]
    groups = blur_groups(runs).value_counts() if len(runs) else pd.Series(dtype=int)
    items = [
        f"objectives: {objectives}",
        f"finished trials: {all_runs['trial'].nunique() if len(all_runs) else 0}; failed or "
        f"pruned attempts: {len(failed)}, {failed['run_again_as'].ne('').sum()} of them run "
        f"again; configurations: {len(configs)}; runs (configuration × seed): {len(runs)}",
        f"seeds per configuration: {', '.join(map(str, sorted(configs['n_seeds'].unique())))}"
        if len(configs)
        else "seeds per configuration: none finished",
        f"runs without blur: {groups.get(NO_BLUR, 0)}; with blur: {groups.get(BLUR, 0)}"
        + "".join(f"; {g}: {n}" for g, n in groups.items() if g not in (NO_BLUR, BLUR)),
        f"runs that did not learn (accuracy not above chance): {int(at_chance(runs).sum())}",
        *(
            [
                f"runs left out: {repeated}, each a seed of a configuration already run (a "
                "point drawn again, or one that makes the same run); the first trial's "
                "runs are counted"
            ]
            if repeated
            else []
        ),
        *_baseline_network_items(runs),
        *_throughput_spread_items(runs),
        *_late_gain_items(runs),
        *_evaluation_items(runs),
        f"varied: {', '.join(varied) or 'nothing'}",
        *(
            [
                f"fixed: {', '.join(chosen) or 'nothing'}",
                f"at their defaults: {', '.join(defaults) or 'nothing'}",
            ]
            if len(configs)
            else ["fixed and default settings: no configuration finished; see `spec.yaml`"]
        ),
    ]
    if meta.constraints:
        bounds = ", ".join(map(str, meta.constraints))
        feasible = int(configs["feasible"].sum()) if len(configs) else 0
        items.append(f"constraints: {bounds}; feasible configurations: {feasible}")
    if "device_metric" in runs:
        items.append(_device_item(runs["device_metric"]))
    items += _made_by_items(runs)
    return Bullets(tuple(items))


def _baseline_network_items(runs: pd.DataFrame) -> list[str]:
    """How many runs of a converted configuration trained the baseline's network, which the
    pooled answers count once with the baseline's run of their seed (`counted_once`)."""
    if NETWORK_KEY not in runs:
        return []
    repeats = int((runs[NETWORK_KEY] != runs[CONFIG_KEY]).sum())
    if not repeats:
        return []
    return [
        f"runs of the baseline's network under another configuration: {repeats} (a one-tap "
        "filter at max-pools computes the max-pool itself); where configurations are pooled "
        "(the questions, the best value of a setting), each network and seed counts once"
    ]


def _device_item(devices: pd.Series) -> str:
    """'device: …'; where runs name several (a CPU's thread count is part of its name), with
    their runs and a warning: their speeds differ, and so may their other metrics."""
    names = devices.dropna()
    if names.nunique() <= 1:
        return f"device: {', '.join(map(str, names.unique()))}"
    return (
        f"devices: {_runs_each(names.value_counts().items())}; this report compares their "
        "runs as if alike, but their speeds differ, and so may their other metrics "
        "(floating-point sums split otherwise)"
    )


def _runs_each(counts: Iterable[tuple[object, int]]) -> str:
    """'a: 2 runs; b: 1 run': the runs each of several devices or versions made."""
    return "; ".join(f"{name}: {n} run{'' if n == 1 else 's'}" for name, n in counts)


def _made_by_items(runs: pd.DataFrame) -> list[str]:
    """'made by: code … (commit …), torch …'; per version (code and torch: what a run
    computes with) with its runs where they differ. Runs of versions that recorded none
    count as one version."""
    if not {"code", "torch"} <= set(runs):
        return []
    made = runs.assign(
        code=runs["code"].fillna("not recorded"),
        torch=runs["torch"].fillna("not recorded"),
        commit=runs.get("commit", pd.Series(index=runs.index, dtype=object)).fillna("?"),
    )
    described, counts = [], []
    for (code, torch), group in made.groupby(["code", "torch"], sort=False):
        commits = ", ".join(sorted({str(c)[:12] + ("-dirty" if str(c).endswith("-dirty") else "")
                                    for c in group["commit"]}))  # fmt: skip
        described.append(f"code {code} (commit {commits}), torch {torch}")
        counts.append(len(group))
    if len(described) == 1:
        return [f"made by: {described[0]}"]
    each = _runs_each(zip(described, counts, strict=True))
    return [
        f"made by {len(described)} versions of the code or torch, whose runs this report "
        f"compares as if alike: {each}"
    ]


def _is_default(field: str, value: object) -> bool:
    """Whether a study's fixed `value` of `field` is `VariantConfig`'s default (read back from a
    table, where None may come back as NaN and an int as a float)."""
    info = VariantConfig.model_fields.get(field)
    if info is None:
        return False
    if info.default is None:
        return value is None or (isinstance(value, float) and math.isnan(value))
    return bool(value == info.default)


def _evaluation_items(runs: pd.DataFrame) -> list[str]:
    """How many images and offsets each run's metrics came from (spec §4)."""
    if not len(runs) or not {"n_test", "n_eval", "shift", "diagonal"} <= set(runs):
        return []

    def values(column: str, as_shown: Callable[[int], object] = lambda v: v) -> str:
        return " or ".join(str(as_shown(int(v))) for v in sorted(runs[column].dropna().unique()))

    return [
        f"images per run: {values('n_test')} test images for accuracy; the first "
        f"{values('n_eval')} of them for the shift metrics, each at "
        f"{values('shift', lambda s: (2 * s + 1) ** 2)} offsets ([-S, S]², S = "
        f"{values('shift')}) for consistency and the adversary and at "
        f"{values('diagonal', lambda d: d + 1)} diagonal offsets for accuracy vs shift"
    ]


#: A configuration whose runs' throughput differs by more than this factor was timed on a
#: machine whose load changed between its runs.
THROUGHPUT_SPREAD = 2.0


def _throughput_spread_items(runs: pd.DataFrame) -> list[str]:
    """Configurations whose runs' throughput differs by more than THROUGHPUT_SPREAD: other load
    on the machine timed them, and the speed answers (and a front that optimises speed) with
    them."""
    items = []
    for metric in ("train_images_per_s", "infer_images_per_s"):
        if metric not in runs:
            continue
        speeds = pd.to_numeric(runs[metric], errors="coerce").where(lambda v: v > 0)
        spread = speeds.groupby(runs[CONFIG_KEY]).agg(lambda v: v.max() / v.min())
        uneven = spread[spread > THROUGHPUT_SPREAD]
        if len(uneven):
            items.append(
                f"`{metric}` varied more than {THROUGHPUT_SPREAD:g}× between the runs of "
                f"{len(uneven)} of {spread.notna().sum()} configurations (up to "
                f"{uneven.max():.1f}×): other load on the machine timed them, so the answers on "
                "speed, and a front that optimises it, rest on that load"
            )
    return items


def _late_gain_items(runs: pd.DataFrame) -> list[str]:
    """How much the runs that learned still learned at the end of their budget (none for
    older studies): a run that never left chance gains nothing late either, which says
    nothing of whether it had finished learning."""
    if "last_quarter_gain" not in runs:
        return []
    recorded = runs["last_quarter_gain"].dropna()
    gains = recorded[~at_chance(runs)]
    if recorded.empty:
        return []
    if gains.empty:
        return [
            "accuracy added by the last quarter of training: no run learned (accuracy not "
            "above chance), so none tells whether its budget was long enough"
        ]
    most = runs.loc[gains.idxmax()]
    some_stuck = len(gains) < len(recorded)
    among = f" (runs that learned: {len(gains)} of {len(recorded)})" if some_stuck else ""
    text = (
        f"accuracy added by the last quarter of training{among}: median {gains.median():.2f} "
        f"points, most {gains.max():.2f}"
    )
    if gains.max() <= 0:
        return [f"{text}: no run was still gaining at the end of its budget"]
    return [
        f"{text} (trial {most['trial']}, seed {most['seed']}); runs still gaining at the end "
        "compare learning speed as much as end points (see the figure "
        "*accuracy_during_training*)"
    ]


METHOD_NOTES = (
    "Each configuration's metric is the mean over its seeds; the 95 % interval is the Student-t "
    "interval over those seeds (mean ± t(0.975, n−1)·s/√n), cut to the metric's range (a "
    "percentage's to [0, 100]). With one seed, or seeds that tie, it is left empty (NaN): "
    "they say nothing about the spread; FLOPs, which every run of a configuration repeats, "
    "are exact from one run. The seeds vary the initialisation, the batch order and the "
    "augmentation, not the data (`data_seed`), so the intervals do not cover another draw "
    "of the data. Each answer is a 95 % interval of its own: of many answers, about one in "
    "twenty may exclude zero by chance. Throughput is measured per run on the study's machine, "
    "a configuration's seeds one after the other, so other load on the machine moves it; off "
    "CUDA it times the plain-PyTorch reference, not the fused kernels. A metric fewer seeds "
    "measured than the row has (a run that did not learn has no consistency) says so: "
    "`(n = 1)`. The research questions "
    "pool the runs without blur (placement `none`, or filter size 1, which is plain "
    "subsampling; with adaptive or learnable polyphase sampling it is neither and is left "
    "out) and the blurred runs over every configuration and seed, and quote the difference of "
    "means (blurred − no blur) with a t-interval over the seeds' paired differences: per "
    "seed, its blurred runs' mean minus its no-blur runs' mean (within each network and data, "
    "where the study varies them, and within each setting both groups ran alike, such as "
    "augmentation on and off), as a seed's runs share their initial weights and batch "
    "order, so seeds, not runs, are the independent samples. The means quoted are the seeds' "
    "means of the runs that pair; a run whose seed has no run in the other group is left out "
    "and counted. Where fewer than two seeds ran on both sides the interval is Welch's over "
    "the runs; for FLOPs, which every run of a configuration repeats, it is the exact range of "
    "the differences between a blurred and a no-blur configuration; where every seed gives "
    "the same difference, there is none. A setting's values are ranked and compared the same "
    "way. Pooled configurations differ in more than blur, so read the effect as an average "
    "over this study's design space. The Pareto front is computed on the configurations' means "
    "(feasible ones only: within the spec's constraints, and every seed's run learned) and "
    "agrees with Optuna's `study.best_trials` when every configuration ran in one trial; a "
    "feasible configuration off it that none on it clearly beats (ahead on an objective by a "
    "95 % interval paired by seed that excludes zero, no worse on the others' means) is marked "
    "≈, near the front. The best of many configurations' means is more likely lucky than not, "
    "so its mean is optimistic: rerun a chosen configuration with fresh seeds before quoting "
    "it (a spec with the configuration as its `base`, `space: {}` and new `seeds`). "
    "Configurations that make "
    f"one run count as one (their seeds once), as they differ only in fields a run leaves "
    f"unused: {UNUSED_FIELDS_TEXT}. The shift metrics "
    "use the first `eval_size` test images, each classified at every offset of [-S, S]² "
    "(`shift`): consistency is the expected share of images whose two offsets, drawn "
    "independently and uniformly, get the same class (exact, with no noise from drawing the "
    "pair), and the adversary counts the images correct at every offset."
)


AT_CHANCE_NOTE = (
    "These runs' test accuracy is not above chance: the share of the test set's most frequent "
    "class, which an answer that ignores the image scores (one-sided exact binomial test, "
    "p < 0.001). A network that learned nothing gives an image the same answer wherever it "
    "sits, so its consistency (below) and its flat accuracy-vs-shift curve are no merit of its "
    "design: they are left out of every mean, figure and answer, and a configuration with such "
    "a run is off the Pareto front. Its accuracy, adversarial accuracy, filter smoothness and "
    "costs are kept, as they are; each answer says how many such runs it left out or counted. "
    "Short budgets often end before a run leaves the loss "
    "plateau of early training; more epochs or another learning rate tell whether the design "
    "or the budget is at fault."
)


def at_chance_blocks(runs: pd.DataFrame, varied: Sequence[str]) -> list[Block]:
    """The runs that did not learn, with what they measured, or nothing when every run learned."""
    stuck = runs[at_chance(runs)]
    if stuck.empty:
        return []
    measured = ["accuracy", "chance_accuracy"]
    measured += [c for c in runs.columns if c.startswith("consistency_")] + ["final_train_loss"]
    table = _design_table(stuck, varied, ["trial", "seed"], [c for c in measured if c in stuck])
    return [Heading("Runs that did not learn"), Paragraph(AT_CHANCE_NOTE), Table(table)]


def _empty_front_reason(configs: pd.DataFrame) -> str:
    """Why no configuration is on the front: none finished, or none is feasible, and why not."""
    if configs.empty:
        return "No configuration is on the front: none has a finished run."
    if configs["feasible"].any():
        return "No configuration is on the front: the runs do not record the objectives."
    stuck = int(configs["seeds_at_chance"].gt(0).sum())
    reasons = [f"{stuck} of {len(configs)} have a run that did not learn"] if stuck else []
    if stuck < len(configs):
        reasons.append(f"{len(configs) - stuck} miss the constraints")
    return f"No configuration is on the front, none is feasible: {' and '.join(reasons)}."


def _answer_bullets(answers: Sequence[Answer]) -> Bullets:
    return Bullets(tuple(f"**{a.key} — {a.question}** {a.sentence}" for a in answers))


def summary_blocks(
    meta: StudyMeta,
    location: StorageLocation,
    runs: pd.DataFrame,
    configs: pd.DataFrame,
    failed: pd.DataFrame,
    config_cols: Sequence[str],
    varied: Sequence[str],
    sections: Sequence[tuple[str, Sequence[Answer]]],
    outcomes: Sequence[figs.FigureOutcome],
    unfinished: Paragraph | None = None,
) -> list[Block]:
    """The report's content, in reading order; `location`: the storage the study was read from;
    `varied`: the fields the study varied (`varied_fields`); `sections` are the answers under
    their headings (a section without answers is left out); `unfinished`: what a study not
    finished yet still has to run (:func:`unfinished_note`), first."""
    all_runs, runs = runs, first_run_per_seed(runs)
    blocks: list[Block] = [
        *([unfinished] if unfinished else []),
        _overview(meta, all_runs, runs, configs, failed, varied, config_cols),
        Paragraph(
            f"Browse the trials interactively: `optuna-dashboard {location.recorded}` "
            "(`pip install optuna-dashboard` first)."
        ),
        *at_chance_blocks(runs, varied),
    ]
    for heading, answers in sections:
        if answers:
            blocks += [Heading(heading), _answer_bullets(answers)]
    blocks.append(Heading("Pareto front"))
    front = front_table(configs, varied, meta)
    blocks.append(Table(front) if len(front) else Paragraph(_empty_front_reason(configs)))
    blocks += [Paragraph(note)] if (note := _near_front_note(configs)) else []
    if len(configs) > len(front):
        blocks += [Heading("All configurations"), Table(all_configs_table(configs, varied, meta))]
    blocks.append(Heading("Figures"))
    for outcome in outcomes:
        if outcome.figure is None:
            blocks.append(Paragraph(f"*{outcome.name}*: {outcome.note}"))
        else:
            caption = " ".join(filter(None, (figs.CAPTIONS[outcome.name], outcome.note)))
            blocks.append(FigureBlock(f"{FIGURE_DIR}/{outcome.name}.png", caption))
    if len(failed):
        table = _design_table(failed, varied, ["trial"], FAILURE_COLUMNS)
        blocks += [Heading("Failed attempts"), Table(table)]
    blocks += [
        Heading("How the numbers are made"),
        Paragraph(METHOD_NOTES),
        Paragraph(
            "Files: `runs.csv`/`.parquet` (one row per trial × seed), `configs.csv`/`.parquet` "
            "(aggregated over seeds), `pareto_front.csv`/`.parquet`, `figures/` (PNG and SVG), "
            "`report.html` (this page, self-contained)."
        ),
    ]
    return blocks


def unfinished_note(status: QueueStatus) -> Paragraph | None:
    """Where design points still wait, run or have a retry left, that the report is from the
    finished ones only (a front and answers that read as the study's would mislead)."""
    if status.done and not status.retry_on_resume:
        return None
    counts = {
        "running": status.running,
        "waiting": status.waiting,
        "failed with a retry left": status.retry_on_resume,
    }
    left = [f"{n} {state}" for state, n in counts.items() if n]
    return Paragraph(
        f"**Not finished:** design points {', '.join(left)}. "
        "Everything below is from the points finished so far: run the study's command again to "
        "finish it (it resumes where it stopped), then this report."
    )


def write_report(out_dir: Path | str, storage: str | None = None) -> list[Path]:
    """Write the tables, figures, `summary.md` and `report.html` of the study in `out_dir`
    (`storage`: the database URL, where `meta.json`'s lacks its password)."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    location = study_location(out_dir, meta, storage)
    study = load_study(out_dir, meta, location)
    runs, config_cols = runs_table(study)
    analysed = mask_runs_at_chance(first_run_per_seed(runs))
    configs = mark_front(aggregate_over_seeds(analysed, config_cols), meta)
    configs["near_front"] = near_front(configs, analysed, meta.objectives)
    failed = failed_trials(study)
    written = write_table(runs, out_dir / "runs") + write_table(configs, out_dir / "configs")
    written += write_table(configs[configs["pareto"]], out_dir / "pareto_front")
    outcomes = make_figures(study, analysed, configs, meta)
    for outcome in outcomes:
        written += figs.save_figure(outcome, out_dir / FIGURE_DIR)
    consistency = consistency_metric_of(meta)
    varied = varied_fields(study)
    sections = [
        ("The paper's research questions", answer_questions(analysed, consistency)),
        ("What blur costs", cost_answers(analysed)),
        ("Polyphase sampling (APS, LPS) against the fixed grid", polyphase_answers(analysed)),
        ("Which setting does best", choice_answers(analysed, meta.objectives, varied)),
    ]
    blocks = summary_blocks(
        meta, location, runs, configs, failed, config_cols, varied, sections, outcomes,
        unfinished_note(queue_status(study, meta.max_retries)),
    )  # fmt: skip
    written += write_documents(f"Study {meta.study_name}", blocks, out_dir)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ablate.report",
        description="Write tables, the Pareto front, figures and a summary of a finished study.",
    )
    parser.add_argument("out_dir", type=Path, help="the study's output folder (runs/<name>)")
    parser.add_argument(
        "--storage",
        help="the study's storage where meta.json's is not it: a journal file moved elsewhere, "
        "or the database URL with its password, which meta.json leaves out (PostgreSQL also "
        "reads it from PGPASSWORD or ~/.pgpass)",
    )
    args = parser.parse_args(argv)
    try:
        written = write_report(args.out_dir, args.storage)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:  # a file in a folder's place, a full disk: named, not a traceback
        parser.error(f"cannot write the report: {error}")
    print(f"wrote {len(written)} files into {args.out_dir}:")
    for path in written:
        print(f"  {path}")
    print(read_first(args.out_dir))
    return 0


def read_first(out_dir: Path) -> str:
    """The line that says which of the report's files to open."""
    return f"read first: {out_dir / 'summary.md'} or {out_dir / 'report.html'}"


if __name__ == "__main__":
    sys.exit(main())
