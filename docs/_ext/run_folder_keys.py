"""The ``run-folder-keys`` directive: a table of what every file or key of a run folder means,
built from :mod:`pyrovae.report.keys`, the descriptions report.html shows.

    ```{run-folder-keys} summary
    ```

The argument is one of ``files``, ``config``, ``summary``, ``diagnostics``, ``figures``.
"""

from docutils import nodes
from docutils.parsers.rst import Directive, directives

from pyrovae.report.keys import KEY_TABLE_HEADERS as HEADERS
from pyrovae.report.keys import key_rows


def _row(cells, header: bool = False) -> nodes.row:
    row = nodes.row()
    for i, cell in enumerate(cells):
        entry = nodes.entry()
        if i == 0 and not header:
            entry += nodes.paragraph("", "", nodes.literal(cell, cell))
        else:
            entry += nodes.paragraph(cell, cell)
        row += entry
    return row


class RunFolderKeys(Directive):
    required_arguments = 1
    has_content = False
    option_spec = {"class": directives.class_option}

    def run(self):
        kind = self.arguments[0]
        if kind not in HEADERS:
            raise self.error(f"run-folder-keys takes one of {', '.join(HEADERS)}, got {kind!r}")
        header = HEADERS[kind]
        table = nodes.table(classes=["run-folder-keys"])
        group = nodes.tgroup(cols=len(header))
        table += group
        widths = {2: (25, 75), 3: (22, 60, 18), 4: (20, 52, 14, 14)}[len(header)]
        for width in widths:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(header, header=True)
        body = nodes.tbody()
        for cells in key_rows(kind):
            body += _row(cells)
        group += head
        group += body
        return [table]


def setup(app):
    app.add_directive("run-folder-keys", RunFolderKeys)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
