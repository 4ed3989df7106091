"""The twistd dropin: ``twistd -n shutterlog``. Holds one lazy ServiceMaker and nothing else."""

from twisted.application.service import ServiceMaker

shutterlog = ServiceMaker(
    "shutterlog",
    "server.tap",
    "shutterlog API service: the HTTP JSON API and the WebSocket stream",
    "shutterlog",
)
