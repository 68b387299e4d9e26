"""A gRPC client in Python, generated from proto/switchboard/v1 by grpcio-tools,
calling a switchboard service (started by tests/grpc.rs, which passes the
address, the token and the proto directory).

Checks: a typed request and its reply; a handler's refusal, an unknown subject
and a bad subject as statuses with `sb-*` metadata; a missing token; an event
published from here reaching a switchboard subscriber; and a Subscribe stream
receiving an event the service publishes. Exits non-zero on the first mismatch.
"""

import json
import os
import queue
import sys
import tempfile
import threading

from grpc_tools import protoc

address, token, proto_dir = sys.argv[1], sys.argv[2], sys.argv[3]

generated = tempfile.mkdtemp(prefix="switchboard-grpc-py-")
for proto in ("switchboard/v1/switchboard.proto", "switchboard/v1/mesh.proto"):
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={generated}",
            f"--grpc_python_out={generated}",
            proto,
        ]
    )
    if status != 0:
        sys.exit(f"grpcio-tools could not compile {proto} (exit {status})")
sys.path.insert(0, generated)

import grpc  # noqa: E402
from switchboard.v1 import switchboard_pb2 as pb  # noqa: E402
from switchboard.v1 import switchboard_pb2_grpc as pb_grpc  # noqa: E402

AUTH = (("authorization", f"Bearer {token}"),)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def error_of(call):
    try:
        call()
    except grpc.RpcError as err:
        return err
    sys.exit("FAILED: the call succeeded but should have failed")


channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=10)
client = pb_grpc.SwitchboardStub(channel)

# A typed request: the reply is computed by the Rust handler.
reply = client.Request(
    pb.Envelope(
        subject="orders.place",
        headers={"tenant": "acme"},
        payload=json.dumps({"item": "book", "quantity": 3, "unit_cents": 1250}).encode(),
    ),
    metadata=AUTH,
    timeout=5,
)
receipt = json.loads(reply.payload)
check(receipt == {"order_id": 1001, "total_cents": 3750, "tenant": "acme"}, f"typed reply {receipt}")

# The handler's refusal: UNKNOWN, the text as details, switchboard's status and code as metadata.
err = error_of(
    lambda: client.Request(
        pb.Envelope(subject="orders.place", payload=json.dumps({"item": "book", "quantity": 0, "unit_cents": 1}).encode()),
        metadata=AUTH,
        timeout=5,
    )
)
trailers = dict(err.trailing_metadata() or ())
check(err.code() == grpc.StatusCode.UNKNOWN, f"refusal code {err.code()}")
check("quantity must be at least 1" in err.details(), f"refusal text {err.details()!r}")
check(trailers.get("sb-status") == "handler-error", f"refusal sb-status {trailers}")
check(trailers.get("sb-error-code") == "invalid_quantity", f"refusal sb-error-code {trailers}")

# Nobody serves the subject: NOT_FOUND with sb-status no-responders.
err = error_of(lambda: client.Request(pb.Envelope(subject="nobody.home"), metadata=AUTH, timeout=5))
check(err.code() == grpc.StatusCode.NOT_FOUND, f"unknown subject code {err.code()}")
check(dict(err.trailing_metadata() or ()).get("sb-status") == "no-responders", "unknown subject sb-status")

# Not a subject at all: INVALID_ARGUMENT.
err = error_of(lambda: client.Request(pb.Envelope(subject="orders..place"), metadata=AUTH, timeout=5))
check(err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"bad subject code {err.code()}")

# Without the token: UNAUTHENTICATED, and nothing reaches a handler.
err = error_of(lambda: client.Request(pb.Envelope(subject="orders.place"), timeout=5))
check(err.code() == grpc.StatusCode.UNAUTHENTICATED, f"no token code {err.code()}")

# An event from here reaches the service's subscriber (tests/grpc.rs checks what arrived).
client.Publish(
    pb.Envelope(subject="audit.python", headers={"origin": "python"}, payload=b'{"seen":true}'),
    metadata=AUTH,
    timeout=5,
)
print("ok: published audit.python")

# Follow orders.* and see the event the service publishes when an order is placed.
events = queue.Queue()
stream = client.Subscribe(pb.SubscribeRequest(subject="orders.*"), metadata=AUTH)


def follow():
    try:
        for event in stream:
            events.put(event)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            events.put(err)


threading.Thread(target=follow, daemon=True).start()
# The subscription is live once the service announced it; place orders until the event shows.
event = None
for attempt in range(50):
    client.Request(
        pb.Envelope(subject="orders.place", payload=json.dumps({"item": "pen", "quantity": 2, "unit_cents": 100}).encode()),
        metadata=AUTH,
        timeout=5,
    )
    try:
        event = events.get(timeout=0.2)
        break
    except queue.Empty:
        continue
stream.cancel()
check(isinstance(event, pb.Envelope), f"subscribed event {event!r}")
check(event.subject == "orders.placed", f"event subject {event.subject}")
check(json.loads(event.payload) == {"order_id": 1001, "item": "pen", "total_cents": 200}, f"event payload {event.payload!r}")
print("python client: all checks passed")
