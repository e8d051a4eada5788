"""Print the diagnostic runs under this folder as one markdown table (the README's figures).

    python experiments/rnn_ha/diagnostics/summarise.py

Each sub-folder holds a run's results.json and config_resolved.yaml; the table gives its schedule (epochs,
learning-rate drop), world, variant, x2 pooling, the authors' switches (descriptor map, x1 fed once or twice,
GRU biases), seed, test mAP / rank-1 and the model-level accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VARIANT = {("rnn", True): "RNN-HA", ("fc", True): "FC-HA", ("rnn", False): "RNN-H w/o att"}


def rows(root: Path = HERE) -> list[dict]:
    out = []
    for res in sorted(root.rglob("results.json")):
        cfg = yaml.safe_load((res.parent / "config_resolved.yaml").read_text())
        r = json.loads(res.read_text())
        net, t = cfg["model"]["net"], r["test"]
        world = cfg["data"]["synthetic"]
        out.append({
            "run": str(res.parent.relative_to(root)),
            "schedule": f"{cfg['trainer']['max_epochs']} ep, drop after {cfg['scheduler']['milestones']}",
            "world": f"{world['layout']} {world['ids']} ids x {world['images_per_id']}",
            "variant": VARIANT[(net["hierarchy"], bool(net["attention"]))],
            "x2 pool": net["attended_pool"] if net["attention"] else "-",
            # the authors' switches (absent from runs older than them: the paper's reading)
            "map / x1 / GRU biases": f"{cfg['backbone'].get('trunk_end', 'conv5')} / "
                                     f"{'twice' if net.get('repeat_x1') else 'once'} / {net.get('gru_biases', 1)}",
            "seed": cfg["seed"],
            "mAP": 100 * t["mAP"] if "mAP" in t else float("nan"),
            "rank1": 100 * t["rank1"],
            "model_acc": 100 * t["model_acc"] if "model_acc" in t else float("nan"),
        })
    return out


def main() -> int:
    keys = ["run", "schedule", "world", "variant", "x2 pool", "map / x1 / GRU biases", "seed", "mAP", "rank1",
            "model_acc"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows():
        print("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
