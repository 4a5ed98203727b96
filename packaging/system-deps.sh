#!/usr/bin/env bash
# Debian/Ubuntu libraries Qt needs (window, offscreen and Xvfb rendering), xvfb-run for screenshot tests and
# desktop-file-validate (desktop-file-utils) for the Linux installer's tests.
# Installs only what is missing; needs root or passwordless sudo, otherwise prints the command to run and
# continues (the tests that need a missing piece then fail with that same hint).
set -u
packages=(libegl1 libgl1 libfontconfig1 libfreetype6 libglib2.0-0 libdbus-1-3 libx11-6 libx11-xcb1 libxkbcommon0
          libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0
          libxcb-render-util0 libxcb-image0 libxcb-xinerama0 fonts-dejavu-core xvfb xauth
          desktop-file-utils)
command -v dpkg >/dev/null 2>&1 || exit 0   # not Debian-like: see README for your platform
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo"; else
  echo "Shoal's desktop needs: ${missing[*]}"
  echo "  → sudo apt-get install ${missing[*]}"
  exit 0
fi
echo "Installing ${missing[*]}"
$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
