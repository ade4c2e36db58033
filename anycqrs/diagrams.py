"""Mermaid diagrams of chains of responsibility and sagas.

Each diagram class has ``.sequence()`` and ``.class_diagram()``, returning
Mermaid text to paste in a Markdown ```` ```mermaid ```` block.

Example:
    ```python
    from anycqrs.diagrams import CoRMermaid

    print(CoRMermaid([CardHandler, WalletHandler, InvoiceHandler]).sequence())
    ```
"""

from .requests._mermaid import CoRMermaid
from .saga._mermaid import SagaMermaid

__all__ = ["CoRMermaid", "SagaMermaid"]
