"""Result rows: read by attribute (`row.title`) or by key (`row["title"]`), like a mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class Row(Mapping):
    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        object.__setattr__(self, "_data", data)

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> object:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(f"row has no column {key!r} (columns: {', '.join(self._data)})") from None

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("rows are read-only")

    def __repr__(self) -> str:
        return f"Row({self._data!r})"
