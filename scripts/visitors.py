"""A page visitor without a browser: Streamlit's own websocket protocol, as a script (or a hostile visitor)
speaks it. Each Visitor is one session of the page: it asks for runs with a query string and reads the
page's messages until the run ends, or sends Streamlit's other messages (the "Clear cache" menu's).

Used by the capacity benchmark (bench_visitors.py) and the tests of what one visitor can do to the page.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol


@dataclass
class Run:
    """What one run of the page sent: its seconds from request to the end of the run, the text of its
    Markdown, alerts and page links, and the exceptions it showed."""

    seconds: float
    texts: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    text_boxes: dict[str, str] = field(default_factory=dict)  # each text box's label: its widget id

    def says(self, words: str) -> bool:
        return any(words in text for text in self.texts)


class Visitor:
    def __init__(self, url: str, timeout: float = 120) -> None:
        self.timeout = timeout
        self.text_boxes: dict[str, str] = {}
        self._open = ExitStack()  # the connection is a context (websockets deprecates one used without)
        self.connection: ClientConnection = self._open.enter_context(
            connect(
                url.replace("http", "ws", 1) + "/_stcore/stream",
                subprotocols=[Subprotocol("streamlit")],
                max_size=None,
            )
        )

    def run(self, query_string: str = "", page: str = "") -> Run:
        """Run the page (`page`: a view's URL path, "" for the default one) with this query string, as a
        browser does when it opens a link; back when the run has finished (or stopped for a rerun it asked)."""
        message = BackMsg()
        message.rerun_script.query_string = query_string
        message.rerun_script.page_name = page
        return self._send(message)

    def type(self, label: str, text: str, query_string: str = "") -> Run:
        """Type `text` into the text box (or area) of this label, shown by an earlier run, and press Enter."""
        message = BackMsg()
        message.rerun_script.query_string = query_string
        widget = message.rerun_script.widget_states.widgets.add()
        widget.id = self.text_boxes[label]
        widget.string_value = text
        return self._send(message)

    def _send(self, message: BackMsg) -> Run:
        started = time.perf_counter()
        self.connection.send(message.SerializeToString())
        run = Run(0.0)
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self.connection.recv(timeout=self.timeout))
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                shown = element.WhichOneof("type")
                if shown == "markdown":
                    run.texts.append(element.markdown.body)
                elif shown == "alert":
                    run.texts.append(element.alert.body)
                elif shown == "exception":
                    run.exceptions.append(f"{element.exception.type}: {element.exception.message}")
                elif shown == "text_input":
                    run.text_boxes[element.text_input.label] = element.text_input.id
                elif shown == "text_area":
                    run.text_boxes[element.text_area.label] = element.text_area.id
                elif shown == "page_link":
                    run.texts.append(element.page_link.label)
            elif kind == "script_finished" and forward.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                run.seconds = time.perf_counter() - started
                self.text_boxes |= run.text_boxes
                return run

    def clear_cache(self) -> None:
        """What the "Clear cache" menu item sends: any visitor can send it, and Streamlit clears its caches
        for every session."""
        message = BackMsg()
        message.clear_cache = True
        self.connection.send(message.SerializeToString())

    def close(self) -> None:
        self._open.close()
