#!/usr/bin/env bash
# Install the S3 clients that the gateway tests drive when they are missing: rclone and
# s3cmd (Debian's packages), and the AWS SDK for JavaScript (npm, into tests/js). Debian's
# packages install only as root or with passwordless sudo. Otherwise the script prints one
# line naming what is missing and the command that installs it. Always exits 0, so that
# `make test` still runs for a user who cannot install: those tests then skip, except under
# CI (the CI variable set), where they fail.
set -uo pipefail

PACKAGES=(rclone s3cmd)
JS_DIR="$(dirname "$0")/../tests/js"
MIN_NODE_MAJOR=20

# npm ci installs exactly what tests/js/package-lock.json pins, and only when that file
# changed since the last install.
install_js_sdk() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "install-s3-clients: node or npm missing, so the JavaScript SDK tests skip" \
            "(and fail under CI); install Node.js $MIN_NODE_MAJOR or newer with npm"
        return
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt "$MIN_NODE_MAJOR" ]; then
        echo "install-s3-clients: Node.js $major is older than $MIN_NODE_MAJOR, which the" \
            "JavaScript SDK needs, so its tests skip (and fail under CI)"
        return
    fi
    local installed="$JS_DIR/node_modules/.package-lock.json"
    if [ -f "$installed" ] && [ "$installed" -nt "$JS_DIR/package-lock.json" ]; then
        return
    fi
    echo "install-s3-clients: installing the AWS SDK for JavaScript with npm ci in tests/js"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
        echo "install-s3-clients: npm ci failed in tests/js, so the JavaScript SDK tests" \
            "skip (and fail under CI); try: (cd tests/js && npm ci)"
}

install_js_sdk

missing=()
for package in "${PACKAGES[@]}"; do
    # Each package installs a command of the same name.
    command -v "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

install_command="apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install-s3-clients: ${missing[*]} missing, so their tests skip (and fail under CI);" \
        "install with: sudo $install_command"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-s3-clients: ${missing[*]} missing and apt-get not found, so their tests" \
        "skip (and fail under CI); install ${missing[*]} with this system's package manager"
    exit 0
fi

echo "install-s3-clients: installing ${missing[*]} with apt-get"
# sudo drops most of the environment, so `env` sets DEBIAN_FRONTEND past it. The lock timeout
# makes apt-get wait for another apt-get or dpkg run instead of failing at once.
apt_get=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 -q)
# A fresh machine may have no package lists yet, and an old list may name files that are gone.
if ! "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}"; then
    "${apt_get[@]}" update &&
        "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" ||
        echo "install-s3-clients: failed to install ${missing[*]}, so their tests skip" \
            "(and fail under CI); try: sudo apt-get update && sudo $install_command"
fi
exit 0
