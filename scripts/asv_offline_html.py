"""Make asv's published HTML (``.asv/html``) work without internet access.

``asv publish`` writes pages that load jQuery, Flot, Bootstrap and a few plugins from CDNs.
On a machine without internet (CI runners, sandboxes) this script copies the same libraries
from Debian's packages (``apt-get install libjs-jquery libjs-jquery-flot libjs-bootstrap
libjs-jquery-stupidtable node-blueimp-md5``) into ``.asv/html/vendor/`` and points the pages at
them, so that ``asv preview`` or ``python -m http.server`` and a headless browser show the graphs.

Usage: ``python scripts/asv_offline_html.py [HTML_DIR]`` (default ``.asv/html``).
"""
import pathlib
import re
import shutil
import sys

JS = pathlib.Path("/usr/share/javascript")
# CDN file name -> local files (in load order) that provide it
VENDOR = {
    "jquery-3.3.1.min.js": [JS / "jquery/jquery.min.js"],
    "jquery.flot.min.js": [JS / "jquery-flot/jquery.flot.pack.js"],
    "jquery.flot.time.min.js": [JS / "jquery-flot/jquery.flot.time.js"],
    "jquery.flot.selection.min.js": [JS / "jquery-flot/jquery.flot.selection.js"],
    "jquery.flot.categories.min.js": [JS / "jquery-flot/jquery.flot.categories.js"],
    "jquery.flot.orderBars.js": [],        # bar ordering only; the line graphs do not need it
    "stupidtable.min.js": [JS / "jquery-stupidtable/stupidtable.js"],
    "md5.min.js": [JS / "blueimp-md5/md5.js"],
    "bootstrap.min.js": [JS / "bootstrap/js/bootstrap.min.js"],
    "bootstrap.min.css": [JS / "bootstrap/css/bootstrap.min.css"],
}
# Debian's Flot (4.x) draws the legend as SVG and leaves its styling to the page
LEGEND_CSS = ("<style>.legendLayer .background { fill: rgba(255, 255, 255, 0.85); "
              "stroke: rgba(0, 0, 0, 0.85); stroke-width: 1; }</style>")
TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https://[^"]+)"[^>]*>(?:</script>)?')


def localise(html_dir):
    html_dir = pathlib.Path(html_dir)
    vendor = html_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    for files in VENDOR.values():
        for f in files:
            if not f.exists():
                sys.exit(f"missing {f}: install the Debian packages named in this script's docstring")
            shutil.copy(f, vendor / f.name)

    def replace(match):
        kind, url = match.groups()
        name = url.rsplit("/", 1)[-1]
        if name not in VENDOR:
            return match.group(0)
        if kind == "link":
            return "".join(f'<link rel="stylesheet" href="vendor/{f.name}">' for f in VENDOR[name])
        return "".join(f'<script src="vendor/{f.name}"></script>' for f in VENDOR[name])

    for page in html_dir.glob("*.html"):
        text = page.read_text()
        new = TAG.sub(replace, text)
        if new != text and "legendLayer" not in new:
            new = new.replace("</head>", LEGEND_CSS + "</head>", 1)
        if new != text:
            page.write_text(new)
            print(f"localised {page}")


if __name__ == "__main__":
    localise(sys.argv[1] if len(sys.argv) > 1 else ".asv/html")
