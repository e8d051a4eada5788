"""Provenance block of results.json: versions, device, git state, command line, data identity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vreid_lightning.provenance import PROVENANCE_SCHEMA, collect_provenance, dataset_identity, git_state

TOP_KEYS = {"schema", "time_utc", "versions", "cuda", "host", "git", "command", "dataset"}


def test_collect_provenance_keys_and_versions() -> None:
    import lightning
    import numpy
    import torch
    import torchvision

    prov = collect_provenance()
    assert set(prov) == TOP_KEYS and prov["schema"] == PROVENANCE_SCHEMA
    v = prov["versions"]
    assert (v["torch"], v["torchvision"], v["lightning"], v["numpy"]) == (
        torch.__version__, torchvision.__version__, lightning.__version__, numpy.__version__)
    assert v["python"].count(".") == 2 and v["timm"]
    assert prov["cuda"]["available"] == torch.cuda.is_available()
    assert prov["cuda"]["torch_cuda"] == torch.version.cuda
    assert isinstance(prov["host"]["cpu_count"], int) and prov["host"]["cpu_count"] >= 1
    assert prov["command"]["argv"] and isinstance(prov["command"]["line"], str)
    json.dumps(prov)  # JSON-able as is


def test_cuda_and_device_when_a_gpu_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU machine: the cuDNN version, the GPU names, and the device the trainer's accelerator picks."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    gpu = collect_provenance({"trainer": {"accelerator": "gpu"}})
    assert gpu["cuda"]["available"] and gpu["cuda"]["cudnn"] == 91002
    assert gpu["cuda"]["devices"] == ["NVIDIA H200 #0", "NVIDIA H200 #1"]
    assert gpu["host"]["device"] == "NVIDIA H200 #0" and gpu["host"]["accelerator"] == "gpu"
    cpu = collect_provenance({"trainer": {"accelerator": "cpu"}})
    assert cpu["host"]["device"] == "cpu" and cpu["cuda"]["devices"]  # the GPU is there, the run is not on it


def test_git_state_in_a_checkout_and_outside(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("a\n")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    clean = git_state(repo)
    assert clean == {"commit": head, "dirty": False, "changed_files": 0}
    (repo / "f.txt").write_text("b\n")
    assert git_state(repo)["dirty"] is True and git_state(repo)["changed_files"] == 1
    outside = tmp_path / "plain"
    outside.mkdir()
    state = git_state(outside)
    assert state["commit"] is None and state["dirty"] is None and state["error"]


def test_dataset_identity_of_a_synthetic_world(veri_world: Path, cache_dir: Path) -> None:
    from conftest import TINY_WORLD

    from vreid_lightning.data.datamodule import ReIDDataModule
    from vreid_lightning.synth import GENERATOR_VERSION

    dm = ReIDDataModule(dataset="veri", root=None, synthetic=dict(TINY_WORLD), cache_dir=str(cache_dir),
                        image_size=[32, 32], num_workers=0)
    dm.setup("fit")
    ident = collect_provenance(None, dm)["dataset"]
    assert ident["dataset"] == "veri" and ident["layout"] == "veri"
    assert ident["root"] == str(veri_world)
    assert ident["splits"]["train"]["images"] == len(dm.dataset.train)
    assert ident["splits"]["gallery"]["ids"] == dm.dataset.gallery.num_ids
    syn = ident["synthetic"]
    assert syn["generator_version"] == GENERATOR_VERSION and syn["world"] == veri_world.name
    assert syn["key"] in veri_world.name and syn["params"] == TINY_WORLD
    assert 0.0 <= syn["type_colour_sharing"] <= 1.0
    json.dumps(ident)


def test_dataset_identity_carries_parser_diagnostics() -> None:
    """numpy counts in a parser's diagnostics come out as plain JSON numbers."""

    class FakeDM:
        dataset_name = "compcars"
        synthetic = None
        source_summary: list = []

        class dataset:  # noqa: N801 - mimics the attribute
            root = Path("/data/CompCars")
            warnings = ["3 listed files missing"]
            diagnostics = {"missing_files": np.int64(3)}

            @staticmethod
            def splits() -> dict:
                return {}

    ident = dataset_identity(FakeDM())
    assert ident["diagnostics"] == {"missing_files": 3} and type(ident["diagnostics"]["missing_files"]) is int
    assert ident["warnings"] == 1 and ident["root"] == "/data/CompCars" and "synthetic" not in ident


def test_identity_from_config_alone() -> None:
    cfg = {"data": {"dataset": "vehicleid", "root": "/data/VehicleID_V1.0", "synthetic": None}}
    ident = collect_provenance(cfg)["dataset"]
    assert (ident["dataset"], ident["layout"], ident["root"]) == ("vehicleid", "vehicleid", "/data/VehicleID_V1.0")
    assert ident["splits"] is None


def test_fast_dev_run_results_json_holds_provenance(tmp_path: Path, veri_world: Path) -> None:
    """A fast_dev_run's results.json carries the provenance block with the run's data identity."""
    import torch
    from conftest import TINY, TINY_WORLD, compose

    from vreid_lightning.run import run
    from vreid_lightning.synth import GENERATOR_VERSION

    run(compose(["+experiment=baseline_synthetic", *TINY, "trainer.fast_dev_run=true"], tmp_path))
    prov = json.loads((tmp_path / "results.json").read_text())["provenance"]
    assert set(prov) == TOP_KEYS
    assert prov["versions"]["torch"] == torch.__version__ and prov["host"]["accelerator"] == "cpu"
    assert prov["host"]["device"] == "cpu"
    data = prov["dataset"]
    assert data["dataset"] == "veri" and data["root"] == str(veri_world)
    assert data["synthetic"]["generator_version"] == GENERATOR_VERSION and data["synthetic"]["params"] == TINY_WORLD
    assert data["splits"]["train"]["images"] > 0 and data["splits"]["query"]["ids"] > 0
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
