"""Build Shoal's one-folder bundle for this machine: `make bundle [FLAVOUR=slim|full]`.

Steps: (slim) convert all-MiniLM-L6-v2 to GGUF for torch-free memory; run PyInstaller on packaging/shoal.spec;
write BUILD-INFO.json into the bundle (flavour, size, Python, glibc, and what llama.cpp was compiled for, so
it is known which llama-cpp-python build went in); on Linux pack a tarball with the .desktop entry, icons and
the install script. Output: dist/<flavour>/shoal/ and dist/shoal-<version>-<os>-<arch>-<flavour>.tar.gz.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def convert_embedding_model() -> Path:
    sys.path.insert(0, str(ROOT))
    from core.memory.embedder import default_model_path
    from core.memory.gguf_embed import convert_to_gguf

    out = ROOT / "build" / "models" / "all-MiniLM-L6-v2.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_to_gguf(default_model_path(), out, dtype="q8_0")  # 25 MB; cosine >= 0.999 against the original
    return out


def llama_build_info() -> dict[str, str]:
    """What the installed llama.cpp was compiled for. A portable build (GGML_NATIVE=OFF) lists the baseline
    instruction sets; a native one lists whatever the build machine had (e.g. AVX512)."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    info = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return {"llama_cpp_system_info": info, "cmake_args": os.environ.get("CMAKE_ARGS", "")}


def glibc() -> str:
    name, version = platform.libc_ver()
    return f"{name} {version}".strip()


def strip_debug_symbols(bundle: Path) -> int:
    """Drop symbols no one links against from the bundle's libraries (libpython from a source build keeps 18 MB).
    Libraries that wheels vendored through auditwheel (`<package>.libs/`) are left alone: patchelf moved
    their segments, and strip makes them unloadable ("ELF load command address/offset not page-aligned")."""
    if shutil.which("strip") is None or not sys.platform.startswith("linux"):
        return 0
    before = folder_size(bundle)
    for library in (bundle / "_internal").rglob("*.so*"):
        if library.is_symlink() or not library.is_file() or any(p.endswith(".libs") for p in library.parts):
            continue
        subprocess.run(["strip", "--strip-unneeded", str(library)], check=False, capture_output=True)
    return before - folder_size(bundle)


def build(flavour: str) -> Path:
    if flavour == "slim":
        convert_embedding_model()
    dist, work = ROOT / "dist" / flavour, ROOT / "build" / f"pyinstaller-{flavour}"
    env = {**os.environ, "SHOAL_FLAVOUR": flavour}
    started = time.monotonic()
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
               "--distpath", str(dist), "--workpath", str(work), str(ROOT / "packaging" / "shoal.spec")]  # fmt: skip
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    bundle = dist / "shoal"
    stripped = strip_debug_symbols(bundle)
    info = {
        "flavour": flavour,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "glibc": glibc(),
        "size_bytes": folder_size(bundle),
        "stripped_bytes": stripped,
        **llama_build_info(),
    }
    (bundle / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return bundle


def tarball(bundle: Path, flavour: str) -> Path:
    """The bundle with its desktop entry, icons and installer, ready to download and unpack."""
    from importlib.metadata import version

    name = f"shoal-{version('shoal')}-{sys.platform}-{platform.machine()}-{flavour}"
    out = bundle.parent.parent / f"{name}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(bundle, arcname=f"{name}/shoal")
        tar.add(ROOT / "packaging" / "linux" / "install.sh", arcname=f"{name}/install.sh")
        tar.add(ROOT / "resources" / "shoal.desktop", arcname=f"{name}/shoal.desktop")
        tar.add(ROOT / "resources" / "icons", arcname=f"{name}/icons")
    print(f"{out} ({out.stat().st_size / 1e6:.0f} MB)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=["slim", "full"], default=os.environ.get("FLAVOUR", "slim"))
    parser.add_argument("--no-tarball", action="store_true")
    args = parser.parse_args()
    if shutil.which("ldd") is None and sys.platform.startswith("linux"):
        raise SystemExit("ldd is missing (Debian: libc-bin): PyInstaller needs it to find shared libraries")
    bundle = build(args.flavour)
    if sys.platform.startswith("linux") and not args.no_tarball:
        tarball(bundle, args.flavour)


if __name__ == "__main__":
    main()
