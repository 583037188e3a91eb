#!/usr/bin/env bash
# Build benchmarks/pets_speed/.venv-mbrl: mbrl-lib 0.2.0 on Python 3.11 (run from anywhere).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$HERE/.venv-mbrl"
PIP="$HERE/.venv-mbrl/bin/pip"
"$PIP" install torch==2.13.0            # pinned: this machine serves a local CPU wheel for exactly this version
"$PIP" install -r "$HERE/requirements-mbrl.txt"
"$PIP" install --no-deps mbrl==0.2.0
"$HERE/.venv-mbrl/bin/python" -W ignore -c "import mbrl.planning, mbrl.models, mbrl.util.common; print('mbrl', __import__('mbrl').__version__, 'ok')"
