"""`pip install .` (not only editable) gives a working broker: data files travel in the wheel."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_mappings_web_demo_and_migrations(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel = next(tmp_path.glob("broker-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "broker/_data/mappings/procedures.toml" in names
    assert "broker/_data/web/templates/index.html" in names
    assert "broker/_data/fixtures/demo/01_ct_head.hl7" in names
    assert any(n.startswith("broker/store/migrations/versions/") for n in names)
    assert "broker/store/migrations/env.py" in names

    # Installed from the wheel (not the checkout), the broker migrates a database and finds its data.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    script = ("import broker, broker.resources as r;"
              "assert broker.__file__.startswith(%r), broker.__file__;"
              "assert (r.mappings_dir() / 'procedures.toml').is_file();"
              "assert (r.web_dir() / 'templates' / 'index.html').is_file();"
              "assert len(list(r.demo_fixtures_dir().glob('*.hl7'))) == 5;"
              "from broker.cli import main; raise SystemExit(main(['db', 'upgrade']))" % str(target))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
