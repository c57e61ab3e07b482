"""report.html: one page, no network. CSS and the one script are inline, fonts are the
system's, and figures are PNG files in the same folder referenced by relative path (the page
and its PNGs move together; a PNG left behind is named on the page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

__all__ = ["Picture", "Section", "render_page"]


@dataclass
class Picture:
    """A figure: ``file`` relative to report.html, a title and a caption (how to read it)."""

    file: str
    title: str
    caption: str = ""


@dataclass
class Section:
    """A part of the page: prepared HTML (a table), pictures and one-line notes."""

    title: str
    html: str = ""
    pictures: list[Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    intro: str = ""


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1300px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing, p.note { color: #666; font-style: italic; }
p.warning, p.broken { color: #a33; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 600px; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""

# After load: count the images that decoded, keep the counts on <body> (data-images,
# data-images-loaded) and name any PNG that is missing, e.g. when report.html was copied alone.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-loaded", String(loaded.length));
  images.forEach(function (img) {
    if (loaded.indexOf(img) >= 0) { return; }
    var note = document.createElement("p");
    note.className = "broken";
    note.textContent = "missing figure " + img.getAttribute("src") +
      ": keep the PNG files next to report.html";
    img.parentNode.insertBefore(note, img);
  });
});
"""


def _section_html(section: Section) -> str:
    parts = [f"<h2>{escape(section.title)}</h2>"]
    if section.intro:
        parts.append(f"<p>{escape(section.intro)}</p>")
    parts.extend(f'<p class="note">{escape(note)}</p>' for note in section.notes)
    if section.html:
        parts.append(section.html)
    if section.pictures:
        parts.append('<div class="figures">')
        for picture in section.pictures:
            caption = f"<b>{escape(picture.title)}</b>"
            if picture.caption:
                caption += f": {escape(picture.caption)}"
            parts.append(
                f'<figure><img src="{escape(picture.file, quote=True)}" '
                f'alt="{escape(picture.title, quote=True)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</div>")
    return "\n".join(parts)


def render_page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page as one HTML string."""
    body = "\n".join(_section_html(s) for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n"
        f"<script>{_SCRIPT}</script>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p>{escape(subtitle)}</p>\n{body}\n</body>\n</html>\n"
    )
