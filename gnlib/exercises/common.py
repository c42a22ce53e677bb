"""What every checker shares: the verdict, the report it prints, calling student code safely.

A checker never raises: it prints one verdict (``PASSED``, ``FAILED`` with the reason, or
"not implemented yet" / "not answered yet" for the placeholder the notebook ships with) and
returns a :class:`CheckResult`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NOT_ANSWERED", "NOT_IMPLEMENTED", "NOT_PREDICTED", "REVEALED", "CheckResult",
           "as_number", "call_student", "is_placeholder", "keyed_answer", "number_answer",
           "report"]

NOT_IMPLEMENTED = "not implemented yet"
NOT_ANSWERED = "not answered yet"
NOT_PREDICTED = "no prediction recorded yet"
#: The verdicts of a predict-then-reveal (a checker's are PASSED / FAILED).
REVEALED = ("RIGHT", "NOT QUITE (revealed)")
_PLACEHOLDER_HELP = {
    NOT_IMPLEMENTED: "replace the placeholder with your code",
    NOT_ANSWERED: "replace the ... with your answer",
    NOT_PREDICTED: "set `prediction = ...` in the cell above and run it, then this cell; "
                   "nothing is revealed before",
}


@dataclass(frozen=True)
class CheckResult:
    """Verdict of a checker: ``passed`` and the printed ``message``."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed


def report(title: str, passed: bool, text: str,
           verdicts: tuple[str, str] = ("PASSED", "FAILED")) -> CheckResult:
    """Print and return the verdict; a placeholder gets a one-line friendly message."""
    message = f"{title}: {verdicts[0] if passed else verdicts[1]}\n  {text}"
    if text in _PLACEHOLDER_HELP:
        message = f"{title}: {text} ({_PLACEHOLDER_HELP[text]})"
    print(message)
    return CheckResult(passed, message)


def call_student(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``(result, None)`` or ``(None, problem)``: never raises."""
    try:
        out = fn(*args)
    except NotImplementedError:
        return None, NOT_IMPLEMENTED
    except Exception as err:  # noqa: BLE001 - any failure of student code is feedback
        return None, f"your function raised {type(err).__name__}: {err}"
    return out, (NOT_IMPLEMENTED if out is None else None)


def is_placeholder(value: Any) -> bool:
    """True for the ``...`` (or ``None``) an inline question ships with."""
    return value is ... or value is None


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (an int or a float, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def number_answer(answer: Any, ask: str,
                  placeholder: str = NOT_ANSWERED) -> tuple[float | None, str | None]:
    """An answer that must be a real number, as a float, or why it cannot be checked yet:
    ``placeholder`` (nothing filled in) or ``"<ask>, got <answer>"``."""
    if is_placeholder(answer):
        return None, placeholder
    value = as_number(answer)
    return (value, None) if value is not None else (None, f"{ask}, got {answer!r:.40}")


def keyed_answer(answer: Any, keys: Sequence[str], ask: str = "answer every part",
                 placeholder: str = NOT_ANSWERED, key=str.lower,
                 form: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """An answer given as a dict, with its keys normalized by ``key``, or why it cannot be
    checked yet: ``placeholder`` (nothing filled in), that it is not a dict of the ``form``
    asked for, or the ``keys`` still missing (``"<ask>: still missing [...]"``)."""
    if is_placeholder(answer) or (isinstance(answer, Mapping)
                                  and all(is_placeholder(v) for v in answer.values())):
        return None, placeholder
    if not isinstance(answer, Mapping):
        form = form or "{" + ", ".join(f'"{k}": ...' for k in keys) + "}"
        return None, f"{ask.split()[0]} a dict {form}, got {answer!r:.40}"
    normalized = {key(str(k)): v for k, v in answer.items()}
    missing = [k for k in keys if k not in normalized or is_placeholder(normalized[k])]
    return (None, f"{ask}: still missing {missing}") if missing else (normalized, None)
