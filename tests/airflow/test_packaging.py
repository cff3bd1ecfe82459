"""The Airflow layer is a provider, and the rest of the package runs without Airflow."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_runs import AirflowHome


def test_airflow_providers_list_shows_the_package(airflow_home: AirflowHome):
    listed = airflow_home.airflow("providers", "list")

    assert listed.returncode == 0, listed.stdout
    line = next(line for line in listed.stdout.splitlines() if "airflow-parallel-run" in line)
    assert "ParallelRunStep" in line


def test_provider_config_puts_the_default_output_root_inside_airflow_home(
        airflow_home: AirflowHome):
    shown = airflow_home.airflow("config", "get-value", "parallel_run", "output_root",
                                 AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT=None)

    assert shown.returncode == 0, shown.stdout
    assert shown.stdout.strip() == f"{airflow_home.path}/parallel_run"


def test_package_and_command_line_do_not_import_airflow():
    code = ("import sys, airflow_parallel_run, airflow_parallel_run.cli, "
            "airflow_parallel_run.engine.job\n"
            "airflow_parallel_run.cli.build_parser()\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'airflow')\n"
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr


def test_the_built_wheel_works_installed_outside_the_checkout(tmp_path):
    """Build the wheel, install it into a fresh virtualenv that sees only the installed
    dependencies (never the checkout), and run the command line and the provider from there."""
    import site
    import venv
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(wheels), str(root)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("airflow_parallel_run-*.whl")

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    fresh_python = env_dir / "bin" / "python"
    fresh_site = Path(subprocess.check_output(
        [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # The dependencies come from this virtualenv's site-packages as a plain path entry: its
    # .pth files (the editable install of the checkout among them) are not processed.
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_python),
                                "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]

    work = tmp_path / "elsewhere"
    (work / "in").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (work / "in" / name).write_text(name)
    (work / "echo.py").write_text("def run(mini_batch):\n    return [p[-5:] for p in mini_batch]\n")
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(work)}
    ran = subprocess.run([str(env_dir / "bin" / "parallel-run"), "echo.py", "--input", "in",
                          "--output", "out", "--mini-batch-size", "2"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (work / "out" / "parallel_run_step.txt").read_text().split() == [
        "a.txt", "b.txt", "c.txt"]

    probe = ("import airflow_parallel_run, importlib.metadata as md\n"
             "assert 'site-packages' in airflow_parallel_run.__file__, airflow_parallel_run.__file__\n"
             "(ep,) = [e for e in md.entry_points(group='apache_airflow_provider')"
             " if e.value.startswith('airflow_parallel_run')]\n"
             "info = ep.load()()\n"
             "(plugin,) = md.entry_points(group='airflow.plugins', name='parallel_run')\n"
             "assert plugin.load().name == 'parallel_run'\n"
             "from airflow_parallel_run.airflow import ParallelRunOperator\n"
             "print(info['package-name'], ParallelRunOperator.__name__)\n")
    imported = subprocess.run([str(fresh_python), "-c", probe], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr[-3000:]
    # (Airflow may log to stdout while the plugin loads: the probe prints last)
    assert imported.stdout.splitlines()[-1].split() == ["airflow-parallel-run", "ParallelRunOperator"]


def test_the_s3_extra_resolves_a_current_s3fs():
    """An unpinned s3fs once resolved to 0.4.2 (2020) beside a current boto3: every remote
    test then ran against a client no user has."""
    import importlib.metadata as md
    import warnings

    import fsspec

    year = int(md.version("s3fs").split(".")[0])
    assert year >= 2025, md.version("s3fs")
    extras = [r for r in md.requires("airflow-parallel-run") or [] if r.startswith("s3fs")]
    assert extras and all(">=2025" in r for r in extras), extras
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fsspec warns when it meets a very old s3fs
        fsspec.filesystem("s3", anon=True, skip_instance_cache=True)


def test_operator_is_importable_from_the_package_root():
    code = ("import sys, airflow_parallel_run as prt\n"
            "assert 'airflow' not in sys.modules\n"
            "from airflow_parallel_run import ParallelRunOperator\n"
            "from airflow_parallel_run.airflow.operator import ParallelRunOperator as cls\n"
            "assert ParallelRunOperator is cls and 'ParallelRunOperator' in dir(prt)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr


def test_provider_info_lists_operator_links_plugin_and_documentation():
    code = ("import importlib, json\n"
            "from airflow_parallel_run.airflow.provider import get_provider_info\n"
            "info = get_provider_info()\n"
            "for path in info['extra-links'] + [p['plugin-class'] for p in info['plugins']]:\n"
            "    module, name = path.rsplit('.', 1)\n"
            "    getattr(importlib.import_module(module), name)\n"
            "for entry in info['operators']:\n"
            "    for module in entry['python-modules']:\n"
            "        assert importlib.import_module(module).ParallelRunOperator\n"
            "print(json.dumps(info))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.splitlines()[-1])
    assert info["documentation-url"].startswith("https://")
    assert [link.rsplit(".", 1)[1] for link in info["extra-links"]] == [
        "JobReportLink", "OutputLink"]
    assert info["plugins"] == [{"name": "parallel_run", "plugin-class":
                                "airflow_parallel_run.airflow.plugin.ParallelRunPlugin"}]


def test_airflow_plugins_lists_the_report_app_from_the_provider(airflow_home: AirflowHome):
    listed = airflow_home.airflow("plugins", "-o", "json",
                                  AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS="False")

    assert listed.returncode == 0, listed.stdout
    assert '"parallel_run"' in listed.stdout and "/parallel-run" in listed.stdout


def test_airflow_config_list_shows_the_real_default_output_root(airflow_home: AirflowHome):
    shown = airflow_home.airflow("config", "list", "--section", "parallel_run", "--show-values",
                                 AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT=None)

    assert shown.returncode == 0, shown.stdout
    assert f"output_root = {airflow_home.path}/parallel_run" in shown.stdout.splitlines()
