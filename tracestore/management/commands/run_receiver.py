from django.core.management.base import BaseCommand

from tracestore.receiver import serve


class Command(BaseCommand):
    help = "Run the OTLP gRPC receiver (TraceService/Export + grpc.health.v1)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=4317)
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="exports at once (twice as many threads; default MICROLENS_INGEST_MAX_IN_FLIGHT)",
        )

    def handle(self, *args, host: str, port: int, workers: int | None, **options) -> None:
        serve(host, port, workers)
