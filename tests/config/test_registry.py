"""The registry: validation with paths, substitution, the shipped default, the JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support import ROOT
from vlmswap.registry.availability import NO_GPU, unavailable_reason
from vlmswap.registry.config import (
    ConfigError,
    json_schema,
    load_registry,
    parse_registry,
    render_argv,
)

REGISTRY_FILES = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("deploy/registry*.yaml")])


def _model(**kw):
    base = {"served_name": "m", "cmd": ["server", "--port", "${PORT}"]}
    base.update(kw)
    return base


def test_default_registry_has_the_seed_models_and_the_embedded_engine():
    reg = load_registry()
    served = {s.served_name for s in reg.models.values()}
    assert {
        "rapidocr",
        "rednote-hilab/dots.ocr",
        "Qwen/Qwen3-VL-2B-Instruct",
        "Qwen/Qwen2-VL-2B-Instruct",
        "microsoft/Phi-3.5-vision-instruct",
    } <= served
    ports = {s.served_name: s.port for s in reg.models.values()}
    assert ports["rednote-hilab/dots.ocr"] == 8000 and ports["Qwen/Qwen3-VL-2B-Instruct"] == 8004
    assert ports["Qwen/Qwen2-VL-2B-Instruct"] == 8001 and ports["microsoft/Phi-3.5-vision-instruct"] == 8002
    for name, spec in reg.models.items():
        if spec.cmd and spec.cmd[0] == "vllm":
            assert "--max-model-len" in spec.cmd, name
            assert "--enable-sleep-mode" in spec.cmd, name
            assert '{"image":1,"video":0}' in spec.cmd, name
            assert ("--trust-remote-code" in spec.cmd) == (spec.family in ("dots_ocr", "phi3_v")), name
            # one model resident on a 12 GB card: its share of the card must fit
            util = float(spec.cmd[spec.cmd.index("--gpu-memory-utilization") + 1])
            assert util * 12 <= 11.0, name
    # every seed model is also offered through vlmswap's transformers engine
    hf = [s for s in reg.models.values() if "transformers" in (s.cmd or [])]
    assert {"dots_ocr", "qwen3_vl", "qwen2_vl", "phi3_v"} <= {s.family for s in hf}


def test_dots_mocr_is_in_the_default_registry_like_dots_ocr():
    reg = load_registry()
    assert reg.resolve("rednote-hilab/dots.mocr") == "dots-mocr" and reg.resolve("dots.mocr") == "dots-mocr"
    mocr, ocr = reg.models["dots-mocr"], reg.models["dots-ocr"]
    assert (mocr.family, mocr.sleep_mode, mocr.capabilities) == ("dots_ocr", True, ocr.capabilities)
    assert mocr.cmd[:3] == ["vllm", "serve", "rednote-hilab/dots.mocr"]
    # dots.mocr's README serves it with a string chat-template content format
    assert mocr.cmd[mocr.cmd.index("--chat-template-content-format") + 1] == "string"
    for flag in ("--trust-remote-code", "--enable-sleep-mode", "--gpu-memory-utilization", "--max-model-len"):
        assert flag in mocr.cmd
    assert mocr.env == ocr.env and mocr.port not in {s.port for n, s in reg.models.items() if n != "dots-mocr"}


def test_names_resolve_served_name_alias_and_registry_name():
    reg = load_registry()
    assert reg.resolve("Qwen/Qwen3-VL-2B-Instruct") == "qwen3-vl-2b"
    assert reg.resolve("qwen3-vl") == "qwen3-vl-2b"
    assert reg.resolve("qwen3-vl-2b") == "qwen3-vl-2b"
    assert reg.resolve("nope") is None


def test_errors_name_their_path_in_the_file():
    with pytest.raises(ConfigError) as exc:
        parse_registry({"models": {"qwen3-vl-2b": _model(port=70000)}})
    assert exc.value.errors == ["models.qwen3-vl-2b.port: Input should be less than or equal to 65535"]


def test_every_error_is_reported_not_only_the_first():
    with pytest.raises(ConfigError) as exc:
        parse_registry({"models": {"a": _model(port=0, family="nope"), "b": {"cmd": ["x"]}}})
    joined = "\n".join(exc.value.errors)
    assert "models.a.port" in joined and "models.a.family" in joined and "models.b.served_name" in joined


def test_cost_priors_and_the_pools_settings_are_checked():
    with pytest.raises(ConfigError) as exc:
        parse_registry(
            {
                "gateway": {"pool_policy": "mru", "predict_horizon_s": 0, "stage_min_chance": 2},
                "models": {"a": _model(expected_start_s=0, expected_wake_s=-1)},
            }
        )
    joined = "\n".join(exc.value.errors)
    for path in (
        "gateway.pool_policy",
        "gateway.predict_horizon_s",
        "gateway.stage_min_chance",
        "models.a.expected_start_s",
        "models.a.expected_wake_s",
    ):
        assert path in joined, path
    reg = parse_registry({"models": {"a": _model(expected_start_s=90, expected_wake_s=0.5)}})
    assert reg.gateway.pool_policy == "predictive" and reg.gateway.trace_path is None
    assert reg.models["a"].expected_start_s == 90


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError) as exc:
        parse_registry({"models": {"a": _model(prot=8000)}})
    assert "models.a.prot: Extra inputs are not permitted" in exc.value.errors


def test_process_backend_needs_cmd_and_docker_needs_image():
    with pytest.raises(ConfigError) as exc:
        parse_registry({"models": {"a": {"served_name": "a"}, "b": {"served_name": "b", "backend": "docker"}}})
    joined = "\n".join(exc.value.errors)
    assert "models.a: a process backend needs `cmd`" in joined
    assert "models.b: a docker backend needs `image`" in joined


def test_the_same_id_for_two_models_is_refused():
    with pytest.raises(ConfigError, match="used by both"):
        parse_registry({"models": {"a": _model(served_name="x"), "b": _model(served_name="y", aliases=["x"])}})


def test_substitution_in_argv_and_env_never_joins_a_shell_string():
    argv, env = render_argv(
        ["${PYTHON}", "--port", "${PORT}", "--name", "${SERVED_NAME}", "a b;rm -rf /"],
        {"CACHE": "/c/${MODEL}"},
        {"PORT": "9000", "SERVED_NAME": "Q/x", "MODEL": "q"},
    )
    assert argv == [sys.executable, "--port", "9000", "--name", "Q/x", "a b;rm -rf /"]
    assert env == {"CACHE": "/c/q"}


def test_unavailable_reasons_on_this_machine():
    reg = load_registry()
    assert unavailable_reason(reg.models["rapidocr"], gpu_present=False) is None
    assert unavailable_reason(reg.models["qwen2-vl-2b"], gpu_present=False) in ("vllm not installed", NO_GPU)
    assert unavailable_reason(reg.models["qwen2-vl-2b-hf"], gpu_present=False).startswith("not downloaded (")


def test_missing_files_block_a_model_unless_it_may_download_on_start(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no size lookup: nothing leaves the machine
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    cmd = ["${PYTHON}", "-m", "tests.servers.fault_server", "--port", "${PORT}"]
    spec = parse_registry({"models": {"m": _model(cmd=cmd, hf_repo="org/absent")}}).models["m"]
    assert unavailable_reason(spec, gpu_present=False) == "not downloaded (size unknown)"
    spec = parse_registry({"models": {"m": _model(cmd=cmd, hf_repo="org/absent", download_on_start=True)}}).models["m"]
    assert unavailable_reason(spec, gpu_present=False) is None


@pytest.mark.parametrize("path", [None, *REGISTRY_FILES], ids=lambda p: "default" if p is None else p.name)
def test_shipped_and_example_registries_match_the_json_schema(path):
    from importlib import resources

    text = (
        resources.files("vlmswap.registry").joinpath("default_registry.yaml").read_text()
        if path is None
        else Path(path).read_text()
    )
    jsonschema.validate(yaml.safe_load(text), json_schema())
    load_registry(path)


def test_schema_rejects_what_pydantic_rejects():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"models": {"a": _model(port=70000)}}, json_schema())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlmswap", *args], capture_output=True, text=True, timeout=60)


def test_config_check_prints_each_error_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"models": {"qwen3-vl-2b": _model(port=70000, family="x")}}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"models": {"m": _model()}}))
    r = _cli("config", "check", str(good), str(bad))
    assert r.returncode == 2
    assert f"{good}: ok (1 models)" in r.stdout
    assert f"{bad}: models.qwen3-vl-2b.port: Input should be less than or equal to 65535" in r.stderr
    assert f"{bad}: models.qwen3-vl-2b.family:" in r.stderr


def test_config_check_reports_yaml_syntax_and_missing_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    r = _cli("config", "check", str(broken), str(tmp_path / "missing.yaml"))
    assert r.returncode == 2
    assert "not valid YAML" in r.stderr and "missing.yaml: No such file or directory" in r.stderr


def test_config_show_marks_models_that_cannot_run_here():
    r = _cli("config", "show", "--json")
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert rows["rapidocr"]["unavailable"] is None
    assert rows["dots-ocr"]["unavailable"] in ("vllm not installed", NO_GPU)


def test_config_schema_command_prints_the_schema():
    r = _cli("config", "schema")
    assert r.returncode == 0
    assert json.loads(r.stdout)["title"] == "vlmswap registry"
