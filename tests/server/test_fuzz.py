"""Property-based fuzzing of every operation in /openapi.json with schemathesis: no input gives a 500.

The cases come from schemathesis's Hypothesis strategies (valid and schema-violating bodies, queries and
paths); each is sent in-process to a started app.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test extra: pip install 'aigc-studio[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

# A few seeded examples per operation and mode keep the run short and the same on every machine.
EXAMPLES_PER_OPERATION = 3


def test_no_operation_answers_500(client_factory):
    # Small generation caps: fuzzing checks the handling of input, not the speed of long generations.
    client = client_factory(max_tokens_cap=16, max_n=2)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                response = case.call()
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} {case.body!r:.300} -> {response.status_code}: {response.text[:300]}"
                )
                if response.status_code >= 400:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}

            try:
                check()
            except Unsatisfiable:
                # An operation with no parameters and no body (GET /v1/models) has nothing to break.
                assert mode == GenerationMode.NEGATIVE, operation.label
