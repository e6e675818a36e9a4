"""A page visitor without a browser: Streamlit's own websocket protocol, as a script (or a hostile visitor)
speaks it. Each Visitor is one session of the page: it asks for runs with a query string, types into a box or
presses a button, and reads the page's messages until the run ends, or sends Streamlit's other messages (the
"Clear cache" menu's). As a browser does, it keeps the value of every widget the page shows and sends them all
with each interaction, and a widget drawn by a fragment asks for a run of that fragment alone.

Used by the capacity benchmark (bench_visitors.py) and the tests of what one visitor can do to the page.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
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
    buttons: dict[str, str] = field(default_factory=dict)  # each button's label: its widget id
    widgets: dict[str, WidgetState] = field(default_factory=dict)  # each widget's id: its value as drawn
    fragments: dict[str, str] = field(default_factory=dict)  # a widget's id: the fragment that drew it, if one did

    def says(self, words: str) -> bool:
        return any(words in text for text in self.texts)


class Visitor:
    def __init__(self, url: str, timeout: float = 120) -> None:
        self.timeout = timeout
        self.text_boxes: dict[str, str] = {}
        self.buttons: dict[str, str] = {}
        self.widgets: dict[str, WidgetState] = {}
        self.fragments: dict[str, str] = {}
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
        box = self.text_boxes[label]
        return self._interact(WidgetState(id=box, string_value=text), query_string)

    def press(self, label: str) -> Run:
        """Press the button of this label, shown by an earlier run."""
        button = self.buttons[label]
        return self._interact(WidgetState(id=button, trigger_value=True))

    def _interact(self, changed: WidgetState, query_string: str = "") -> Run:
        """A run with one widget's new value among all the others, of the fragment that drew it if one did."""
        message = BackMsg()
        message.rerun_script.query_string = query_string
        message.rerun_script.widget_states.widgets.extend((self.widgets | {changed.id: changed}).values())
        if fragment := self.fragments.get(changed.id):
            message.rerun_script.fragment_id = fragment
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
                if (state := widget_state(element)) is not None:
                    run.widgets[state.id] = state
                if shown and forward.delta.fragment_id and (widget := getattr(getattr(element, shown), "id", "")):
                    run.fragments[widget] = forward.delta.fragment_id
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
                elif shown == "button":
                    run.buttons[element.button.label] = element.button.id
            elif kind == "script_finished" and forward.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                run.seconds = time.perf_counter() - started
                self.text_boxes |= run.text_boxes
                self.buttons |= run.buttons
                # A run of the whole page unmounts the widgets it did not draw; a fragment's keeps the others.
                self.widgets = (self.widgets if message.rerun_script.fragment_id else {}) | run.widgets
                self.fragments |= run.fragments
                return run

    def clear_cache(self) -> None:
        """What the "Clear cache" menu item sends: any visitor can send it, and Streamlit clears its caches
        for every session."""
        message = BackMsg()
        message.clear_cache = True
        self.connection.send(message.SerializeToString())

    def close(self) -> None:
        self._open.close()


def widget_state(element: Element) -> WidgetState | None:
    """The value a browser holds for a widget as the page drew it (its own value where the page set one, else its
    default), for the widgets whose values persist; None for anything else (buttons and other triggers, charts)."""
    shown = element.WhichOneof("type")
    if shown not in ("text_input", "text_area", "checkbox", "slider", "number_input", "date_input", "selectbox",
                     "button_group"):  # fmt: skip
        return None
    proto = getattr(element, shown)
    state = WidgetState(id=proto.id)
    if shown in ("text_input", "text_area"):
        if proto.set_value or proto.HasField("default"):
            state.string_value = proto.value if proto.set_value else proto.default
    elif shown == "checkbox":
        state.bool_value = proto.value if proto.set_value else proto.default
    elif shown == "slider":
        state.double_array_value.data[:] = proto.value if proto.set_value else proto.default
    elif shown == "number_input":
        if proto.set_value or proto.HasField("default"):
            state.double_value = proto.value if proto.set_value else proto.default
    elif shown == "date_input":
        state.string_array_value.data[:] = proto.value if proto.set_value else proto.default
    elif shown == "selectbox":
        if proto.set_value:
            state.string_value = proto.raw_value
        elif proto.HasField("default"):
            state.string_value = proto.options[proto.default]
    else:  # a segmented control or pills
        chosen = proto.raw_values if proto.set_value else [proto.options[index].content for index in proto.default]
        state.string_array_value.data[:] = chosen
    return state
