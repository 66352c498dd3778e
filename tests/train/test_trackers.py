"""`report_to`: one tiny run logs to TensorBoard, MLflow and W&B (offline), each read back with its
own project's reader: TensorBoard's event accumulator, MLflow's client on a SQLite store, and the
files of the offline W&B run."""

from __future__ import annotations

import json
import sys

import pytest

import tunery


@pytest.fixture(scope="module")
def tracked(tiny_model_dir, chat_data, tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("tracked")
    monkeypatch_module.delenv("WANDB_API_KEY", raising=False)
    monkeypatch_module.setenv("WANDB_MODE", "offline")
    monkeypatch_module.setenv("WANDB_SILENT", "true")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run = tunery.train(
        model=str(tiny_model_dir), data=chat_data[0], validation=chat_data[1], output=root / "tickets",
        n_epochs=1, batch_size=8, eval_every=3, lora={"r": 4}, seed=3,
        report_to=["tensorboard", "mlflow", "wandb"],
        tracking={"project": "labels", "name": "first", "mlflow_uri": uri, "wandb_tags": ["tiny"]},
    )  # fmt: skip
    return run, uri


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def logged(run, name: str) -> list[tuple[int, float]]:
    return [(r["step"], r[name]) for r in run.metrics if name in r]


def assert_series(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [step for step, _ in got] == [step for step, _ in want]
    assert [value for _, value in got] == pytest.approx([value for _, value in want], rel=1e-6)


def test_tensorboard_event_files_hold_every_metric_and_the_config(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked
    events = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    for name in ("train_loss", "learning_rate", "valid_loss", "full_valid_loss"):
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert_series(got, logged(run, name))
    assert "lora.r" in events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()


def test_mlflow_run_has_metrics_params_and_artefacts(tracked):
    from mlflow import MlflowClient

    run, uri = tracked
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("labels")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "first" and found.info.status == "FINISHED"
    history = client.get_metric_history(found.info.run_id, "train_loss")
    assert_series([(m.step, m.value) for m in history], logged(run, "train_loss"))
    assert found.data.params["lora.r"] == "4" and found.data.params["method"] == "sft"
    assert sorted(a.path for a in client.list_artifacts(found.info.run_id)) == ["README.md", "report.json"]
    links = json.loads((run.path / "trackers.json").read_text())
    assert [link["type"] for link in links] == ["tensorboard", "mlflow", "wandb"]
    assert links[1]["run_id"] == found.info.run_id


def wandb_records(path):
    """The records of an offline run's `run-*.wandb`, parsed with wandb's own protobuf schema. The
    file is a LevelDB-style log (wandb's datastore): a 7-byte header, then 32 KiB blocks of chunks,
    each `<checksum u32, length u16, type u8>` (1 full, 2 first, 3 middle, 4 last)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_holds_history_config_and_files(tracked):
    run, _ = tracked
    (offline,) = (run.path / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")  # what `wandb sync` uploads
    history, config, files, header = [], {}, [], None
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if "train_loss" in items:
                history.append((items["_step"], items["train_loss"]))
        elif kind == "config":
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.config.update})
        elif kind == "files":
            files += [f.path for f in record.files.files]
        elif kind == "run":
            header = record.run
    assert (header.project, header.display_name, list(header.tags)) == ("labels", "first", ["tiny"])
    assert_series(history, logged(run, "train_loss"))
    assert config["lora.r"] == 4 and config["method"] == "sft"
    assert {"final/README.md", "eval/report.json"} <= set(files)
    assert (offline / "files" / "final" / "README.md").is_file()


def test_a_missing_tracker_package_names_its_extra(tiny_model_dir, chat_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # how Python spells "not installed"
    with pytest.raises(tunery.errors.TuneryError, match="report_to mlflow needs the mlflow package") as error:
        tunery.train(model=str(tiny_model_dir), data=chat_data[0], output=tmp_path / "r", report_to=["mlflow"])
    assert "tunery[mlflow]" in error.value.hint
    assert not (tmp_path / "r" / "checkpoints").exists()  # stopped before training


def test_report_to_is_checked(chat_data):
    with pytest.raises(tunery.errors.TuneryError, match="report_to"):
        tunery.run_config(data=chat_data[0], report_to=["comet"])
    with pytest.raises(tunery.errors.TuneryError, match="names a tracker twice"):
        tunery.run_config(data=chat_data[0], report_to=["wandb", "wandb"])
