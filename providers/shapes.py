"""Translators trust the shapes they read; these guards turn a surprise into the right error.

Requests are checked (`gateway.shapes`) before any translator sees them, but a field of an
unexpected type that slips through must still be the client's 400 (`UnsupportedRequest`),
never the gateway's 500; an upstream answer of an unexpected shape is the upstream's fault
(`UpstreamError`, a failed attempt that may fail over).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from providers.base import UnsupportedRequest, UpstreamError

P = ParamSpec("P")
T = TypeVar("T")
SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)


def request_guard(kind: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """For a request translator: a shape it cannot read becomes a 400 for the client."""
    def decorate(translate: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(translate)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return translate(*args, **kwargs)
            except UnsupportedRequest:
                raise
            except SHAPE_ERRORS as exc:
                raise UnsupportedRequest(f"the request has a field of a type {kind} cannot take "
                                         f"({type(exc).__name__}: {exc}); check it against the OpenAI API "
                                         "reference") from None
        return guarded
    return decorate


def answer_guard(kind: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """For an answer or stream translator: an upstream answer it cannot read is a failed attempt."""
    def decorate(translate: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(translate)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return translate(*args, **kwargs)
            except UpstreamError:
                raise
            except SHAPE_ERRORS as exc:
                raise UpstreamError(f"{kind} sent an answer of an unexpected shape ({type(exc).__name__})",
                                    kind="malformed", retryable=True) from None
        return guarded
    return decorate
