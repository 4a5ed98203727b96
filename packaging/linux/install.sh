#!/usr/bin/env bash
# Install Shoal for the current user (no root): run from the unpacked shoal-<version>-linux-<arch>-<flavour>
# folder, which holds shoal/ (the one-folder bundle), shoal.desktop, icons/ and this script.
#
#   ./install.sh                 install (or replace an earlier install)
#   ./install.sh --autostart     also start Shoal at login
#   ./install.sh --uninstall     remove what this script installed (your conversations and models stay)
#   ./install.sh --prefix DIR    use DIR/bin and DIR/share instead of ~/.local/bin and ~/.local/share
#
# What goes where (default prefix):
#   ${XDG_DATA_HOME:-~/.local/share}/shoal/app/                   the bundle (the app's data lives beside it in
#                                                                  .../shoal/ and is never touched)
#   ${XDG_DATA_HOME:-~/.local/share}/shoal/install.sh             a copy of this script, to uninstall later
#   ~/.local/bin/shoal                                             symlink to .../shoal/app/shoal
#   ${XDG_DATA_HOME:-~/.local/share}/applications/shoal.desktop   menu entry, Exec= rewritten to the absolute path
#   ${XDG_DATA_HOME:-~/.local/share}/icons/hicolor/<N>x<N>/apps/shoal.png, .../scalable/apps/shoal.svg
#   ${XDG_CONFIG_HOME:-~/.config}/autostart/shoal.desktop          with --autostart only
set -euo pipefail

me="install.sh"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$me" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$me" "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Usage: ./install.sh [--autostart] [--prefix DIR]
       ./install.sh --uninstall [--prefix DIR]

Installs Shoal for the current user: the app into ~/.local/share/shoal/app, the `shoal` command into
~/.local/bin, a menu entry and icons. No root needed.

  --autostart    also start Shoal when you log in
  --uninstall    remove everything this script installed (conversations, settings and models are kept)
  --prefix DIR   install into DIR/bin and DIR/share instead of ~/.local (XDG_DATA_HOME is then ignored)
  -h, --help     this help
EOF
}

autostart=0
uninstall=0
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --autostart) autostart=1 ;;
    --uninstall) uninstall=1 ;;
    --prefix)
      if [ $# -lt 2 ] || [ -z "$2" ]; then die "--prefix needs a folder"; fi
      prefix="$2"
      shift
      ;;
    --prefix=*)
      prefix="${1#--prefix=}"
      [ -n "$prefix" ] || die "--prefix needs a folder"
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown option: $1"
      ;;
  esac
  shift
done

[ -n "${HOME:-}" ] || die "HOME is not set"
if [ -n "$prefix" ]; then
  case "$prefix" in
    /*) ;;
    *) prefix="$PWD/$prefix" ;; # Exec= lines and the symlink need absolute paths
  esac
  prefix="${prefix%/}"
  data="$prefix/share"
  bindir="$prefix/bin"
else
  data="${XDG_DATA_HOME:-$HOME/.local/share}"
  bindir="$HOME/.local/bin"
fi
confdir="${XDG_CONFIG_HOME:-$HOME/.config}"

home="$data/shoal"                # also the app's own data folder (timeline, models, logs): never removed
appdir="$home/app"                # the installed bundle
exe="$appdir/shoal"               # the installed executable
launcher="$bindir/shoal"          # symlink on PATH
entry="$data/applications/shoal.desktop"
autostart_entry="$confdir/autostart/shoal.desktop"
icons="$data/icons/hicolor"
uninstall_cmd="\"$home/install.sh\" --uninstall${prefix:+ --prefix \"$prefix\"}"

# Refresh the menu and icon caches when the tools exist; never fail because of them. A cache that would describe
# nothing (the last entry or icon removed) is deleted instead.
refresh_caches() {
  local apps="$data/applications" found
  if [ -d "$apps" ]; then
    found="$(find "$apps" -name '*.desktop' -print -quit 2>/dev/null || true)"
    if [ -z "$found" ]; then
      rm -f "$apps/mimeinfo.cache"
    elif command -v update-desktop-database >/dev/null 2>&1; then
      update-desktop-database -q "$apps" >/dev/null 2>&1 || warn "update-desktop-database failed (ignored)"
    fi
  fi
  if [ -d "$icons" ]; then
    found="$(find "$icons" -type f ! -name icon-theme.cache -print -quit 2>/dev/null || true)"
    if [ -z "$found" ]; then
      rm -f "$icons/icon-theme.cache"
    elif command -v gtk-update-icon-cache >/dev/null 2>&1; then
      # -t: a user's hicolor folder has no index.theme
      gtk-update-icon-cache -q -f -t "$icons" >/dev/null 2>&1 || warn "gtk-update-icon-cache failed (ignored)"
    fi
  fi
}

# A path as one argument of an Exec= line (Desktop Entry Specification, "The Exec key"): `%` doubles; a path
# with reserved characters goes in double quotes with `"`, `` ` ``, `$` and `\` backslash-escaped, and then
# every backslash is doubled again by the string escaping of the file format.
exec_arg() {
  local p="${1//%/%%}"
  if [[ "$p" =~ [^A-Za-z0-9/._+,:@=%-] ]]; then
    p="${p//\\/\\\\\\\\}"
    p="${p//\"/\\\\\"}"
    p="${p//\`/\\\\\`}"
    p="${p//\$/\\\\\$}"
    p="\"$p\""
  fi
  printf '%s' "$p"
}

# The desktop entry with every `Exec=shoal ...` pointing at the installed executable; written atomically.
write_entry() {
  local source="$1" target="$2" arg line
  arg="$(exec_arg "$exe")"
  mkdir -p "$(dirname "$target")"
  {
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        "Exec=shoal") line="Exec=$arg" ;;
        "Exec=shoal "*) line="Exec=$arg ${line#Exec=shoal }" ;;
      esac
      printf '%s\n' "$line"
    done <"$source"
  } >"$target.tmp.$$"
  chmod 644 "$target.tmp.$$"
  mv -f "$target.tmp.$$" "$target"
}

is_our_launcher() {
  [ -L "$launcher" ] && [ "$(readlink "$launcher")" = "$exe" ]
}

# --- uninstall ----------------------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  removed=()
  if is_our_launcher; then
    rm -f "$launcher"
    removed+=("$launcher")
  elif [ -e "$launcher" ] || [ -L "$launcher" ]; then
    warn "$launcher is not Shoal's launcher (it does not point at $exe): left alone"
  fi
  for f in "$entry" "$autostart_entry"; do
    if [ -f "$f" ]; then
      rm -f "$f"
      removed+=("$f")
    fi
  done
  shopt -s nullglob
  for f in "$icons"/*/apps/shoal.png "$icons"/*/apps/shoal.svg; do
    rm -f "$f"
    removed+=("$f")
    if rmdir "$(dirname "$f")" 2>/dev/null; then rmdir "$(dirname "$(dirname "$f")")" 2>/dev/null || true; fi
  done
  for d in "$appdir" "$home"/.app-new.* "$home"/.app-old.*; do # leftovers of an interrupted install too
    if [ -e "$d" ]; then
      rm -rf "$d"
      removed+=("$d/")
    fi
  done
  shopt -u nullglob
  if [ -f "$home/install.sh" ]; then
    rm -f "$home/install.sh" # bash keeps reading this script from the open file if it is the one running
    removed+=("$home/install.sh")
  fi
  rmdir "$home" 2>/dev/null || true # only if empty: the app's data lives here too
  if [ ${#removed[@]} -eq 0 ]; then
    say "Shoal is not installed in $data: nothing to remove."
    exit 0
  fi
  refresh_caches
  say "Removed:"
  printf '  %s\n' "${removed[@]}"
  if [ -d "$home" ]; then
    say "Kept your data (conversations, memory, downloaded models, logs) in $home/; delete it yourself if you"
    say "want it gone. Settings are in ${XDG_CONFIG_HOME:-$HOME/.config}/shoal/."
  fi
  exit 0
fi

# --- install ------------------------------------------------------------------------------------------------
[ -d "$here/shoal" ] || die "no Shoal bundle next to this script: $here/shoal/ is missing.
Run install.sh from the unpacked shoal-<version>-linux-<arch>-<flavour> folder (tar xzf shoal-....tar.gz)."
if ! [ -f "$here/shoal/shoal" ] || ! [ -x "$here/shoal/shoal" ]; then
  die "$here/shoal/shoal is missing or not executable: the bundle is incomplete; unpack the tarball again"
fi
[ -f "$here/shoal.desktop" ] || die "$here/shoal.desktop is missing: unpack the tarball again"
[ -d "$here/icons" ] || die "$here/icons/ is missing: unpack the tarball again"

# The bundle runs only on its build machine's CPU architecture, with that machine's glibc or newer.
info="$here/shoal/BUILD-INFO.json"
if [ -f "$info" ]; then
  built_for="$(sed -n 's/.*"platform": *"linux-\([^"]*\)".*/\1/p' "$info" | head -n 1)"
  machine="$(uname -m)"
  if [ -n "$built_for" ] && [ "$built_for" != "$machine" ]; then
    die "this bundle is built for $built_for and this computer is $machine: download the $machine build"
  fi
  needs="$(sed -n 's/.*"glibc": *"glibc \([0-9.]*\)".*/\1/p' "$info" | head -n 1)"
  have="$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9.]*\)$/\1/p' || true)"
  if [ -n "$needs" ] && [ -n "$have" ] &&
    [ "$(printf '%s\n%s\n' "$needs" "$have" | sort -V | head -n 1)" != "$needs" ]; then
    warn "this bundle was built with glibc $needs and this system has glibc $have: it will probably not start"
    warn "(build Shoal on this system with 'make bundle', or use a newer distribution)"
  fi
fi

mkdir -p "$home" "$bindir"

# The app: copy beside the old install, then swap with two renames (the old folder is missing only between
# them), then delete the old one. A Shoal that is running keeps its open files until it restarts.
new="$home/.app-new.$$"
old="$home/.app-old.$$"
trap 'rm -rf "$new" "$old"' EXIT
rm -rf "$home"/.app-new.* "$home"/.app-old.* # leftovers of an interrupted install
cp -R -P --preserve=mode,timestamps "$here/shoal" "$new"
replaced=0
if [ -e "$appdir" ] || [ -L "$appdir" ]; then
  mv -T "$appdir" "$old"
  replaced=1
fi
mv -T "$new" "$appdir"
rm -rf "$old"
trap - EXIT
if [ "$replaced" = 1 ]; then
  say "Replaced the app in $appdir/"
else
  say "Installed the app into $appdir/"
fi

# A copy of this script, so that uninstalling does not need the tarball.
cp "${BASH_SOURCE[0]}" "$home/install.sh.tmp.$$"
chmod 755 "$home/install.sh.tmp.$$"
mv -f "$home/install.sh.tmp.$$" "$home/install.sh"

# The command on PATH. Something else called shoal there (e.g. `pip install --user shoal`) is left alone.
if [ -e "$launcher" ] && ! [ -L "$launcher" ]; then
  warn "$launcher exists and is not a symlink (another Shoal install?): left alone; the app is $exe"
else
  ln -sfn "$exe" "$launcher"
  say "Linked $launcher -> $exe"
fi
case ":${PATH:-}:" in
  *":$bindir:"*) ;;
  *) warn "$bindir is not on your PATH: add it (e.g. in ~/.profile: export PATH=\"$bindir:\$PATH\") or run $exe" ;;
esac

# Menu entry with absolute Exec= lines (Icon=shoal is found in the icon theme below).
write_entry "$here/shoal.desktop" "$entry"
say "Wrote the menu entry $entry"

# Icons: icons/shoal-<N>.png -> hicolor/<N>x<N>/apps/shoal.png; shoal.svg -> hicolor/scalable/apps/shoal.svg.
# (shoal-tray.svg is the tray's own icon; the app loads it from its bundle.)
count=0
for png in "$here"/icons/shoal-*.png; do
  [ -f "$png" ] || continue
  size="$(basename "$png" .png)"
  size="${size#shoal-}"
  [[ "$size" =~ ^[0-9]+$ ]] || continue
  install -D -m 644 "$png" "$icons/${size}x${size}/apps/shoal.png"
  count=$((count + 1))
done
if [ -f "$here/icons/shoal.svg" ]; then
  install -D -m 644 "$here/icons/shoal.svg" "$icons/scalable/apps/shoal.svg"
  count=$((count + 1))
fi
[ "$count" -gt 0 ] || warn "no icons found in $here/icons/: the menu entry will have a generic icon"
say "Installed $count icons into $icons/"

# Start at login. Shoal has no "start hidden in the tray" flag: at login it opens its window as usual, and
# closing the window keeps it running in the tray (when the desktop has one).
if [ "$autostart" = 1 ]; then
  write_entry "$here/shoal.desktop" "$autostart_entry"
  say "Wrote $autostart_entry: Shoal starts when you log in (its window opens; close it to keep it in the tray)"
fi

refresh_caches

if [ -n "$prefix" ]; then
  case ":${XDG_DATA_DIRS:-/usr/local/share:/usr/share}:" in
    *":$data:"* | *":$data/:"*) ;;
    *) say "Note: $data is not in XDG_DATA_DIRS, so desktop menus will not list Shoal; $launcher works." ;;
  esac
fi
say ""
say "Start Shoal from your applications menu, or run: shoal   (terminal chat: shoal chat; checks: shoal doctor)"
if [ "$replaced" = 1 ]; then
  say "If Shoal was running, restart it to use the new version: shoal --quit, then start it again."
fi
say "Uninstall: $uninstall_cmd"
