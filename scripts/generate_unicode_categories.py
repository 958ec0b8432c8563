#!/usr/bin/env python3
"""Writes examples/llama/unicode_categories.hpp: the code-point classes that llama.cpp's
pre-tokenizers test (letter \\p{L}, number \\p{N}, whitespace \\s), as sorted inclusive ranges
taken from this Python's unicodedata.

Usage (from anywhere): python3 scripts/generate_unicode_categories.py [--output PATH]

The classes follow llama.cpp's unicode-data.cpp, which its scripts/gen-unicode-data.py derives
from the `regex` module: \\p{L} is the general categories Lu, Ll, Lt, Lm and Lo; \\p{N} is Nd, Nl
and No (so superscripts, fractions and Roman numerals count as numbers, not just 0-9); \\s is
Unicode's White_Space property, which unicodedata does not expose, so it is rebuilt here as the
separators (Zs, Zl, Zp) plus the controls TAB..CR and NEL, and checked against the property's
fixed list. Every other code point below 0x110000 falls in llama.cpp's "anything else" class.
"""
import argparse
import pathlib
import sys
import unicodedata

MAX_CODE_POINT = 0x10FFFF

LETTER = {"Lu", "Ll", "Lt", "Lm", "Lo"}
NUMBER = {"Nd", "Nl", "No"}
SEPARATOR = {"Zs", "Zl", "Zp"}
# White_Space code points that are not separators (controls TAB, LF, VT, FF, CR and NEL).
WHITESPACE_CONTROLS = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85}
# PropList.txt's White_Space, unchanged since Unicode 6.3: the cross-check of the rebuilt set.
WHITE_SPACE_PROPERTY = (
    set(range(0x09, 0x0E))
    | {0x20, 0x85, 0xA0, 0x1680}
    | set(range(0x2000, 0x200B))
    | {0x2028, 0x2029, 0x202F, 0x205F, 0x3000}
)


def ranges(predicate):
    """Sorted inclusive (first, last) ranges of the code points where predicate holds."""
    result = []
    for cp in range(MAX_CODE_POINT + 1):
        if not predicate(cp):
            continue
        if result and result[-1][1] == cp - 1:
            result[-1][1] = cp
        else:
            result.append([cp, cp])
    return result


def table(name, comment, rows):
    lines = [f"// {comment}", f"inline constexpr CodePointRange {name}[] = {{"]
    per_line = 5
    for i in range(0, len(rows), per_line):
        chunk = rows[i : i + per_line]
        lines.append("    " + " ".join(f"{{0x{a:05X}, 0x{b:05X}}}," for a, b in chunk))
    lines.append("};")
    return "\n".join(lines)


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=root / "examples/llama/unicode_categories.hpp")
    args = parser.parse_args()

    def category(cp):
        return unicodedata.category(chr(cp))

    whitespace = ranges(lambda cp: cp in WHITESPACE_CONTROLS or category(cp) in SEPARATOR)
    rebuilt = {cp for a, b in whitespace for cp in range(a, b + 1)}
    if rebuilt != WHITE_SPACE_PROPERTY:
        sys.exit(f"whitespace differs from White_Space: {sorted(rebuilt ^ WHITE_SPACE_PROPERTY)}")
    letter = ranges(lambda cp: category(cp) in LETTER)
    number = ranges(lambda cp: category(cp) in NUMBER)

    tables = "\n\n".join(
        [
            table("letter_ranges", "\\p{L}: %d ranges" % len(letter), letter),
            table("number_ranges", "\\p{N}: %d ranges" % len(number), number),
            table("whitespace_ranges", "\\s: %d ranges" % len(whitespace), whitespace),
        ]
    )
    version = unicodedata.unidata_version
    python = ".".join(str(part) for part in sys.version_info[:3])
    text = f"""#pragma once
// GENERATED FILE, do not edit: python3 scripts/generate_unicode_categories.py
// Unicode {version} (the unicodedata of Python {python}).
//
// The code-point classes of llama.cpp's pre-tokenizer regexes, as sorted inclusive ranges:
// letter is \\p{{L}} (Lu Ll Lt Lm Lo), number is \\p{{N}} (Nd Nl No), whitespace is \\s (the
// White_Space property). The script's docstring says how each maps to llama.cpp's flags.

namespace multibool::llama::unicode {{

struct CodePointRange {{
    char32_t first;
    char32_t last;
}};

inline constexpr const char* unicode_version = "{version}";

// clang-format off
{tables}
// clang-format on

}}  // namespace multibool::llama::unicode
"""
    args.output.write_text(text)
    print(f"wrote {args.output}: Unicode {version}, {len(letter)} letter, {len(number)} number, "
          f"{len(whitespace)} whitespace ranges")


if __name__ == "__main__":
    main()
