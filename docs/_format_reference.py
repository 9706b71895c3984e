"""Render the ndx-celltype spec YAML as a Markdown format reference (one section per type)."""

from __future__ import annotations

from pathlib import Path

import yaml


def _shape(spec: dict) -> str:
    shape = spec.get("shape")
    if shape is None:
        return "scalar"
    dims = spec.get("dims") or [None] * len(shape)
    return (
        "("
        + ", ".join(f"{d or '?'}" if s is None else f"{d}={s}" for d, s in zip(dims, shape, strict=True))
        + ")"
    )


def _dtype(spec: dict) -> str:
    dtype = spec.get("dtype", "")
    if isinstance(dtype, dict):
        return f"{dtype.get('reftype', 'ref')} to {dtype.get('target_type', '?')}"
    return str(dtype)


def _quantity(spec: dict, attribute: bool = False) -> str:
    if attribute:
        return "required" if spec.get("required", True) else "optional"
    q = spec.get("quantity", 1)
    return {1: "required", "?": "optional", "*": "any number", "+": "one or more"}.get(q, str(q))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(spec_dir: Path) -> str:
    """Markdown text describing every type of the namespace in ``spec_dir``."""
    ns = yaml.safe_load((spec_dir / "ndx-celltype.namespace.yaml").read_text())["namespaces"][0]
    lines = [
        "# Format reference: ndx-celltype",
        "",
        f"Generated from `spec/` (namespace **{ns['name']}** version {ns['version']}); do not edit.",
        "",
        _cell(ns["doc"]),
        "",
    ]
    for source in ns["schema"]:
        if "source" not in source:
            continue
        ext = yaml.safe_load((spec_dir / source["source"]).read_text())
        for group in ext.get("groups", []):
            name = group["neurodata_type_def"]
            lines += [
                f"## {name}",
                "",
                f"*extends* `{group['neurodata_type_inc']}`",
                "",
                _cell(group["doc"]),
                "",
            ]
            rows = []
            for a in group.get("attributes", []):
                rows.append(("attribute", a["name"], _dtype(a), _shape(a), _quantity(a, True), a["doc"]))
            for d in group.get("datasets", []):
                kind = d.get("neurodata_type_inc", "dataset")
                rows.append((kind, d["name"], _dtype(d), _shape(d), _quantity(d), d["doc"]))
            for g in group.get("groups", []):
                rows.append(
                    ("group", g.get("name", ""), g.get("neurodata_type_inc", ""), "", _quantity(g), g["doc"])
                )
            for link in group.get("links", []):
                rows.append(
                    ("link", link["name"], f"link to {link['target_type']}", "", _quantity(link), link["doc"])
                )
            if rows:
                lines += [
                    "| part | name | dtype | shape | presence | description |",
                    "|---|---|---|---|---|---|",
                ]
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
    return "\n".join(lines) + "\n"


def write_format_reference(spec_dir: Path, out: Path) -> Path:
    """Write :func:`render` to ``out`` (only when the text changed, to keep Sphinx builds incremental)."""
    text = render(spec_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out
