"""The one exception type of `t1c.ir`.

Every problem with a graph or a `.t1c` file, whether found while reading, validating or
writing, is a :class:`T1CFormatError`. It subclasses :class:`ValueError` so that code
which already catches ``ValueError`` keeps working, and it carries the file, node and
field at fault so that a message can say exactly where to look.
"""

from __future__ import annotations


class T1CFormatError(ValueError):
    """A graph or `.t1c` file that is not valid T1C-IR.

    Attributes:
        reason: what is wrong, in words.
        file: the file being read or written, if any.
        node: the node at fault, if any.
        field: the field (dataset) at fault, if any.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        node: str | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = None if file is None else str(file)
        self.node = node
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file '{self.file}'")
        if self.node is not None:
            where.append(f"node '{self.node}'")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return (", ".join(where) + ": " if where else "") + self.reason

    def within(
        self, *, file: str | None = None, node: str | None = None, field: str | None = None
    ) -> T1CFormatError:
        """A copy with the missing context filled in (what is already known is kept)."""
        return T1CFormatError(
            self.reason,
            file=self.file if self.file is not None else (None if file is None else str(file)),
            node=self.node if self.node is not None else node,
            field=self.field if self.field is not None else field,
        )

    def __reduce__(self):  # picklable across DDP processes
        return (_rebuild, (self.reason, self.file, self.node, self.field))


def _rebuild(reason, file, node, field):
    return T1CFormatError(reason, file=file, node=node, field=field)
