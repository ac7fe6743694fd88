#!/usr/bin/env python3
"""Every relative link in README.md and docs/*.md resolves: the file or directory exists and,
for a Markdown target, the #anchor is one of its headings as GitHub names them. Links to
http(s) and mailto are not followed. Prints each broken link; exit 1 when there is one.

Usage: python3 tests/lint/links.py [REPO_ROOT]
"""
import os
import re
import sys

LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")


def body_lines(text, keep_code=False):
    """The lines outside fenced and indented code blocks, with their numbers; inline code is
    removed unless keep_code (headings keep it: it is part of their anchor)."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            yield number, line if keep_code else CODE_SPAN.sub("", line)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen = {}
        names = set()
        with open(path, encoding="utf-8") as f:
            for _, line in body_lines(f.read(), keep_code=True):
                m = re.match(r"^#{1,6} (.*)", line)
                if not m:
                    continue
                base = slug(m.group(1))
                n = seen.get(base, 0)
                seen[base] = n + 1
                names.add(base if n == 0 else f"{base}-{n}")
        cache[path] = names
    return cache[path]


def check(root, md):
    broken = []
    with open(md, encoding="utf-8") as f:
        text = f.read()
    for number, line in body_lines(text):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
            where = f"{os.path.relpath(md, root)}:{number}: {target}"
            if not os.path.exists(dest):
                broken.append(f"{where}: no such file")
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                broken.append(f"{where}: no heading #{anchor} in {os.path.relpath(dest, root)}")
    return broken


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    files = [os.path.join(root, "README.md")]
    docs = os.path.join(root, "docs")
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    broken = [b for md in files for b in check(root, md)]
    for b in broken:
        print(b)
    links = sum(len(LINK.findall(l)) for md in files for _, l in body_lines(open(md).read()))
    print(f"{len(files)} files, {links} links, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
