"""The reconnect policy: `anycqrs.RetryPolicy`, and the deprecated
`ReconnectPolicy` factory of the equivalent one."""

from __future__ import annotations

import pytest

import anycqrs
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, ReconnectPolicy
from anycqrs.errors import BrokerError, ConnectionLost
from anycqrs.events import EventMediator

from .rabbitmq_helpers import Backoff, Names, Warnings, free_port, target, via


class TestReconnectPolicy:
    """The deprecated factory returns the equivalent `RetryPolicy`."""

    def test_warns_and_returns_the_equivalent_retry_policy(self) -> None:
        with pytest.deprecated_call(match="anycqrs.RetryPolicy"):
            policy = ReconnectPolicy(
                initial_delay=1.0, multiplier=3.0, max_delay=5.0, max_attempts=4
            )
        assert policy == anycqrs.RetryPolicy(attempts=5, delay=1.0, multiplier=3.0, max_delay=5.0)
        # the failed connection is the first attempt: four reconnects, as before
        assert list(policy.delays()) == [1.0, 3.0, 5.0, 5.0]

    def test_forever_by_default(self) -> None:
        with pytest.deprecated_call():
            policy = ReconnectPolicy(initial_delay=0.0)
        assert policy.attempts is None
        forever = policy.delays()
        assert [next(forever) for _ in range(100)] == [0.0] * 100

    @pytest.mark.parametrize(
        "arguments", [{"max_attempts": 0}, {"initial_delay": -1.0}, {"multiplier": -2.0}]
    )
    def test_refuses_bad_values(self, arguments: dict[str, float]) -> None:
        with pytest.deprecated_call(), pytest.raises(ValueError):
            ReconnectPolicy(**arguments)


@pytest.mark.anyio
async def test_consumer_gives_up_on_a_broker_that_never_comes(
    names: Names, mediator: EventMediator, warnings_log: Warnings
) -> None:
    consumer = RabbitMQEventConsumer(
        via("amqp://", free_port()),
        names.queue,
        mediator,
        reconnect=anycqrs.RetryPolicy(attempts=4, delay=0.5, multiplier=3.0, max_delay=2.0),
    )
    backoff = Backoff.on(consumer)
    with pytest.raises(BrokerError, match=r"cannot reconnect after 3 attempt\(s\)") as raised:
        await consumer.run()
    assert isinstance(raised.value.__cause__, ConnectionLost)
    assert backoff.delays == [0.5, 1.5, 2.0]
    assert [m.rsplit("(", 1)[1] for m in warnings_log.attempts()] == [
        "attempt 1 of 3)",
        "attempt 2 of 3)",
        "attempt 3 of 3)",
    ]


@pytest.mark.anyio
async def test_consumer_without_reconnect_does_not_wait_for_the_broker(
    names: Names, mediator: EventMediator, warnings_log: Warnings
) -> None:
    consumer = RabbitMQEventConsumer(
        via("amqp://", free_port()), names.queue, mediator, reconnect=None
    )
    with pytest.raises(ConnectionLost, match="Cannot connect"):
        await consumer.run()
    assert warnings_log.attempts() == []


@pytest.mark.anyio
async def test_consumer_bad_credentials_are_not_retried(
    rabbitmq_url: str, names: Names, mediator: EventMediator, warnings_log: Warnings
) -> None:
    wrong = via(rabbitmq_url, target(rabbitmq_url)[1], user="nobody", password="wrong")
    consumer = RabbitMQEventConsumer(wrong, names.queue, mediator)
    backoff = Backoff.on(consumer)
    with pytest.raises(ConnectionLost, match="Cannot connect"):
        await consumer.run()
    assert backoff.delays == []
    assert warnings_log.attempts() == []
