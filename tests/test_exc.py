"""Unwrapping a task group's lone error."""

from __future__ import annotations

import anyio
import pytest

from anycqrs._exc import BaseExceptionGroup, single_error


@pytest.mark.anyio
class TestSingleError:
    """`single_error` gives back the one real error a task group wrapped."""

    async def test_lone_error_comes_out_as_itself(self) -> None:
        async def fail() -> None:
            raise KeyError("only")

        with pytest.raises(KeyError, match="only"):
            with single_error():
                async with anyio.create_task_group() as group:
                    group.start_soon(fail)

    async def test_two_errors_stay_a_group(self) -> None:
        async def fail(error: Exception) -> None:
            raise error

        with pytest.raises(BaseExceptionGroup) as caught:
            with single_error():
                async with anyio.create_task_group() as group:
                    group.start_soon(fail, KeyError("a"))
                    group.start_soon(fail, ValueError("b"))
        assert {type(e) for e in caught.value.exceptions} == {KeyError, ValueError}

    async def test_the_error_keeps_its_own_cause(self) -> None:
        async def fail() -> None:
            try:
                raise OSError("disk")
            except OSError as exc:
                raise RuntimeError("wrapped") from exc

        with pytest.raises(RuntimeError) as caught:
            with single_error():
                async with anyio.create_task_group() as group:
                    group.start_soon(fail)
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__suppress_context__
