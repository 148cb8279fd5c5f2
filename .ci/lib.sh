# Shared helpers for the Makefile and .ci/run: find interpreters, bootstrap venvs.
# Source it from bash with the repository root as the working directory.

# The Python minors aiolog supports (keep in step with pyproject.toml's classifiers).
SUPPORTED_MINORS=(3.10 3.11 3.12 3.13)

# The minor the main venv (.venv: demo, lint, typecheck, bench) is made with, when available.
MAIN_MINOR=3.11

log() { printf '==> %s\n' "$*" >&2; }

# python_minor PYTHON: print "X.Y" for that interpreter.
python_minor() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# find_pythons: print "<minor> <interpreter>" for each supported minor that is installed.
# With pyenv, the highest patch release of each minor that `pyenv versions --bare` lists;
# without pyenv, only the current python3.
find_pythons() {
    if command -v pyenv >/dev/null 2>&1; then
        local root versions minor best
        root=$(pyenv root)
        versions=$(pyenv versions --bare 2>/dev/null || true)
        for minor in "${SUPPORTED_MINORS[@]}"; do
            # Plain releases only: skip "3.13.0t", "3.12-dev", "3.11.7/envs/foo", "system".
            best=$(grep -E "^${minor//./\\.}\.[0-9]+$" <<<"$versions" | sort -V | tail -n 1 || true)
            if [[ -n $best && -x $root/versions/$best/bin/python3 ]]; then
                echo "$minor $root/versions/$best/bin/python3"
            fi
        done
    else
        local py
        py=$(command -v python3)
        echo "$(python_minor "$py") $py"
    fi
}

# main_python: the interpreter for .venv: Python 3.11 if there is one, else python3.
main_python() {
    local py=""
    if command -v pyenv >/dev/null 2>&1; then
        py=$(pyenv which "python$MAIN_MINOR" 2>/dev/null || true)
        if [[ -z $py ]]; then
            py=$(find_pythons | awk -v m="$MAIN_MINOR" '$1 == m { print $2 }')
        fi
    fi
    [[ -n $py ]] || py=$(command -v "python$MAIN_MINOR" || true)
    [[ -n $py ]] || py=$(command -v python3)
    echo "$py"
}

# venv_dir MINOR: .venv for the main interpreter's minor, .venv-X.Y for the others.
venv_dir() {
    if [[ $1 == "$(python_minor "$(main_python)")" ]]; then
        echo .venv
    else
        echo ".venv-$1"
    fi
}

# ensure_venv DIR PYTHON: create DIR with PYTHON and `pip install -e .[test,speedups,dev]`
# into it, unless the stamp file says it was done for this interpreter and this pyproject.toml.
ensure_venv() {
    local dir=$1 python=$2 want stamp have_version want_version
    stamp=$dir/.aiolog-bootstrap
    want_version=$("$python" -c 'import sys; print(sys.version.split()[0])') || return 1
    want="$want_version $(sha256sum pyproject.toml | cut -d ' ' -f 1)"
    if [[ -x $dir/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    have_version=$("$dir/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || true)
    if [[ $have_version != "$want_version" ]]; then
        log "creating $dir with Python $want_version ($python)"
        rm -rf "$dir"
        "$python" -m venv "$dir" || return 1
    fi
    log "installing aiolog-queue[test,speedups,dev] (editable) into $dir"
    rm -f "$stamp"
    "$dir/bin/python" -m pip install -qq -e ".[test,speedups,dev]" || return 1
    echo "$want" >"$stamp"
}

# ensure_main_venv: bootstrap .venv (used by demo, lint, typecheck, bench).
ensure_main_venv() {
    ensure_venv .venv "$(main_python)"
}
