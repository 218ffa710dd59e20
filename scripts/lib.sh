# Shared by scripts/serve and scripts/test: a project virtualenv kept in sync with pyproject.toml.

ensure_venv() {  # ensure_venv [extra]
    local extra="${1:-}" spec="." stamp
    [ -n "$extra" ] && spec=".[$extra]"
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "usagemeter needs Python 3.11 or newer as python3" >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || python3 -m venv .venv
    stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extra:-base}"
    if [ ! -e "$stamp" ]; then
        echo "installing usagemeter into .venv ..." >&2
        .venv/bin/python -m pip install --quiet --upgrade pip >&2
        .venv/bin/python -m pip install --quiet -e "$spec" >&2
        touch "$stamp"
    fi
}
