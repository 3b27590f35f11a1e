import json
import subprocess
import sys
import textwrap

import dask
import pytest

from catbuilder import config


def test_packaged_defaults_are_loaded():
    assert config.get("cutouts.size") == 64
    assert config.get("selection.spiral-threshold") == 0.985
    # dask's own accessor sees the same tree, with either spelling of keys
    assert dask.config.get("catbuilder.selection.elliptical_threshold") == 0.926


def test_resolve_prefers_keyword_over_config():
    assert config.resolve("cutouts.size", 32) == 32
    assert config.resolve("cutouts.size", None) == 64


def test_set_is_temporary_and_validated():
    with config.set({"cutouts.size": 96}):
        assert config.get("cutouts.size") == 96
    assert config.get("cutouts.size") == 64
    with pytest.raises(config.ConfigKeyError, match=r"cutouts\.siz'.*'size'"):
        with config.set({"cutouts.siz": 96}):
            pass


def test_set_with_a_section_mapping_sets_only_its_keys():
    """A nested mapping (as a pipeline file writes it) leaves the section's other keys."""
    jq = {"cores": 2, "account": "astro"}
    with config.set({"cluster": {"workers": 3, "jobqueue": jq}, "keras": {"augment": "flips"}}):
        assert config.get("cluster.workers") == 3
        assert config.get("cluster.wait-timeout") == 120  # untouched
        assert config.get("cluster.jobqueue") == jq  # free-form: set as a whole
        assert config.get("keras.augment") == "flips"  # a plugin's section too
    assert config.get("cluster.workers") is None
    with pytest.raises(config.ConfigKeyError, match=r"cluster\.wokers'.*'workers'"):
        with config.set({"cluster": {"wokers": 3}}):
            pass
    assert "keras" in config.plugin_sections() and "cutouts" not in config.plugin_sections()


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(config.ConfigKeyError) as info:
        config.validate({"cutouts": {"szie": 3}})
    msg = str(info.value)
    assert "catbuilder.cutouts.szie" in msg and "'size'" in msg
    with pytest.raises(config.ConfigKeyError, match=r"key 'catbuilder\.cutuots'"):
        config.validate({"cutuots": {}})


def test_free_form_sections_accept_any_key():
    config.validate({"cluster": {"jobqueue": {"account": "astro", "qos": "debug"}}})


def test_load_user_file_with_or_without_top_key(tmp_path):
    f = tmp_path / "user.yaml"
    f.write_text("catbuilder:\n  cutouts:\n    size: 80\n")
    try:
        config.load(f)
        assert config.get("cutouts.size") == 80
        g = tmp_path / "bare.yaml"
        g.write_text("cutouts:\n  size: 72\n")
        config.load(g)
        assert config.get("cutouts.size") == 72
    finally:
        dask.config.set({"catbuilder.cutouts.size": 64})


def test_load_rejects_unknown_keys_naming_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("catbuilder:\n  crossmatch:\n    radius: 2\n")
    with pytest.raises(config.ConfigKeyError, match=r"bad\.yaml.*radius-arcsec"):
        config.load(f)
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        config.load(tmp_path / "nope.yaml")


def test_precedence_defaults_file_env_set_kwarg(tmp_path):
    """defaults < user file < CATBUILDER_ env < config.set < keyword argument."""
    user = tmp_path / "user.yaml"
    user.write_text(
        "catbuilder:\n  cutouts:\n    size: 80\n    chunk-objects: 100\n"
        "  infer:\n    batch-size: 8\n"
    )
    code = textwrap.dedent(
        """
        import json
        from catbuilder import config
        out = {
            "size": config.get("cutouts.size"),               # file 80, env 90
            "chunk": config.get("cutouts.chunk-objects"),     # file only
            "batch": config.get("infer.batch-size"),          # file 8
            "radius": config.get("crossmatch.radius-arcsec"),  # default
        }
        with config.set({"cutouts.size": 100}):
            out["set"] = config.get("cutouts.size")
            out["kw"] = config.resolve("cutouts.size", 110)
        print(json.dumps(out))
        """
    )
    env = {
        "CATBUILDER_CONFIG": str(user),
        "CATBUILDER_CUTOUTS__SIZE": "90",
        "PATH": "/usr/bin:/bin",
    }
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"size": 90, "chunk": 100, "batch": 8, "radius": 1.0, "set": 100, "kw": 110}


def test_unknown_environment_key_is_an_error_at_import():
    env = {"CATBUILDER_CUTOUTS__SIZZE": "3", "PATH": "/usr/bin:/bin"}
    res = subprocess.run(
        [sys.executable, "-c", "import catbuilder.config"], env=env, capture_output=True, text=True
    )
    assert res.returncode != 0
    assert "catbuilder.cutouts.sizze" in res.stderr
