"""Traces of a job's run, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

One trace per job: the trigger's span (when the web process submits it), the worker's `autodev.job` span
under it (its W3C traceparent travels in the job's `origin`), and under that plan, steps, test runs, every
LLM request as an OpenTelemetry GenAI client span (`gen_ai.*` attributes, cost and role), every tool call
(`execute_tool {name}`) and publishing. Attributes carry ids, models, counts and dollars: never a prompt,
a file's contents or a secret.

The OpenTelemetry SDK is the optional extra `autodev[otel]`; it is imported here only, when `start()` finds
the variable set. Without it, or without the variable, every function here does nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["Span", "enabled", "force_flush", "shutdown", "span", "start", "traceparent"]

log = logging.getLogger(__name__)

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_provider: Any = None
_tracer: Any = None


def start(env: Mapping[str, str] | None = None) -> bool:
    """Start exporting when an OTLP endpoint is set and the SDK is installed; whether traces are on.

    Called once by each process's composition root (the service, the CLI); a second call is a no-op."""
    global _provider, _tracer
    env = os.environ if env is None else env
    if _tracer is not None:
        return True
    if not any(env.get(v) for v in ENDPOINT_VARS) or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
                    "pip install 'autodev[otel]'; no traces are exported")  # fmt: skip
        return False
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "autodev"})
    provider = TracerProvider(resource=resource)
    # The exporter reads the endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer = provider, provider.get_tracer("autodev")
    log.info("exporting traces over OTLP/HTTP")
    return True


def enabled() -> bool:
    return _tracer is not None


def force_flush(timeout_ms: int = 10_000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def shutdown() -> None:
    """Export what is left and stop (at the process's exit; blocking: call it off the event loop)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:
            log.warning("the trace exporter did not shut down cleanly", exc_info=True)


class Span:
    """A started span, or nothing when traces are off: set attributes and the error status through it."""

    __slots__ = ("_span",)

    def __init__(self, otel_span: Any = None) -> None:
        self._span = otel_span

    def set(self, attributes: Mapping[str, Any]) -> None:
        if self._span is not None:
            self._span.set_attributes(_clean(attributes))

    def error(self, description: str) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, description[:200]))


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: str | None = None,
) -> Iterator[Span]:
    """A span around the block, a child of the current one (or of the W3C traceparent `parent`). An
    exception leaving the block marks it as an error by its type alone: its message may quote a model or
    a file, so it is not recorded."""
    if _tracer is None:
        yield Span()
        return
    from opentelemetry.trace import SpanKind

    context = None
    if parent:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    with _tracer.start_as_current_span(
        name,
        context=context,
        kind=SpanKind[kind.upper()],
        attributes=_clean(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as otel_span:
        wrapped = Span(otel_span)
        try:
            yield wrapped
        except BaseException as exc:
            wrapped.set({"error.type": type(exc).__name__})
            wrapped.error(type(exc).__name__)
            raise


def traceparent() -> str | None:
    """The current span's W3C traceparent (for a job's `origin`, so that its worker continues the trace)."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}
