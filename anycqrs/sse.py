"""Server-Sent Events for ASGI apps: stream a mediator's results to browsers.

Example:
    With Starlette:

    ```python
    from anycqrs.sse import SSEResponse

    async def progress(request: Request) -> SSEResponse:
        return SSEResponse(mediator.stream(TrackOrder(order_id=request.path_params["id"])))

    app = Starlette(routes=[Route("/orders/{id:int}/progress", progress)])
    ```

See [`SSEResponse`][anycqrs.sse.SSEResponse] and [`sse_frame`][anycqrs.sse.sse_frame]; the recipe is
in the
"Streaming" docs page and ``examples/streaming_sse.py``.
"""

from .requests._sse import SSEResponse, sse_frame

__all__ = ["SSEResponse", "sse_frame"]
