"""Sagas: orchestrated steps with compensation, durable storage and recovery.

Define a context, steps and a saga, bind it, and stream it:

```python
@attrs.define
class OrderContext(anycqrs.SagaContext):
    order_id: int

class OrderSaga(anycqrs.Saga[OrderContext]):
    steps = [ReserveStep, PayStep, Fallback(step=ShipFast, fallback=ShipSlow)]

mediator = anycqrs.saga.bootstrap.bootstrap(
    sagas_mapper=lambda sagas: sagas.bind(OrderContext, OrderSaga),
)
async for result in mediator.stream(OrderContext(order_id=1)):
    ...
```

Bootstrap with `anycqrs.saga.bootstrap.bootstrap`; storages live in
`anycqrs.saga.storage`.
"""

from .._breaker import CircuitBreakerLike as CircuitBreakerLike
from .._retry import RetryPolicy as RetryPolicy
from ._map import SagaMap as SagaMap
from ._mediator import SagaMediator as SagaMediator
from ._saga import Fallback as Fallback
from ._saga import Saga as Saga
from ._saga import SagaContext as SagaContext
from ._saga import SagaStepHandler as SagaStepHandler
from ._start import saga_id_for as saga_id_for
from ._types import SagaState as SagaState
from ._types import SagaStatus as SagaStatus
from ._types import SagaStepEntry as SagaStepEntry
from ._types import SagaStepResult as SagaStepResult
from ._types import SagaStepStatus as SagaStepStatus
from ._types import StepAction as StepAction

__all__ = [
    "CircuitBreakerLike",
    "Fallback",
    "RetryPolicy",
    "Saga",
    "SagaContext",
    "SagaMap",
    "SagaMediator",
    "SagaState",
    "SagaStatus",
    "SagaStepEntry",
    "SagaStepHandler",
    "SagaStepResult",
    "SagaStepStatus",
    "StepAction",
    "saga_id_for",
]
