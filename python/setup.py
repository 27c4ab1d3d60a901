"""Build hook: generates the bridge protocol's message classes from the repository's
``proto/`` folder with the protoc bundled in grpcio-tools, so Rust (prost), C++ (protoc) and
Python always compile the one schema. Everything else is in pyproject.toml.

The .proto files are looked up in ``$MALCOLM_PROTO_DIR``, then ``../proto`` (a checkout of
the repository: ``pip install ./python``), then ``proto/`` inside this folder (an sdist).
"""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The protocol files the adapter needs (the control plane is gRPC and not used here).
PROTOS = ["malcolm/bridge/v1/bridge.proto", "malcolm/bridge/v1/trace.proto"]


def proto_root() -> Path:
    candidates = [os.environ.get("MALCOLM_PROTO_DIR"), HERE.parent / "proto", HERE / "proto"]
    for c in candidates:
        if c and all((Path(c) / p).is_file() for p in PROTOS):
            return Path(c)
    raise SystemExit(
        "malcolm-gym: cannot find the bridge .proto files (looked in $MALCOLM_PROTO_DIR, "
        f"{HERE.parent / 'proto'}, {HERE / 'proto'}); build from a checkout of the repository"
    )


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # build requirement (pyproject.toml)
    import grpc_tools

    root = proto_root()
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(root / p) for p in PROTOS],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"malcolm-gym: protoc failed on {PROTOS} in {root}")
    # protoc writes modules, not packages: make malcolm/, malcolm/bridge/, ... importable.
    for d in {out_dir / Path(p).parent for p in PROTOS}:
        while d != out_dir:
            (d / "__init__.py").touch()
            d = d.parent


class BuildPyWithProtos(build_py):
    def run(self):
        super().run()
        generate(Path(self.build_lib))

    def get_outputs(self, include_bytecode=True):
        # Lets setuptools' editable/wheel machinery know about the generated files.
        outs = super().get_outputs(include_bytecode)
        out_dir = Path(self.build_lib)
        for p in PROTOS:
            stem = out_dir / Path(p).with_suffix("")
            outs += [f"{stem}_pb2.py", f"{stem}_pb2.pyi"]
        return outs


def _sdist_cmd():
    """An sdist that carries the .proto files, so it builds without the repository."""
    from setuptools.command.sdist import sdist

    class Sdist(sdist):
        def make_release_tree(self, base_dir, files):
            super().make_release_tree(base_dir, files)
            root = proto_root()
            for p in PROTOS:
                dst = Path(base_dir) / "proto" / p
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / p, dst)

    return Sdist


setup(cmdclass={"build_py": BuildPyWithProtos, "sdist": _sdist_cmd()})
