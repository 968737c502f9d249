"""The ``kefu`` command."""

import argparse
import gc
import os
import sys
from pathlib import Path

from kefu.config_file import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kefu", description="Omnichannel support routing.")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run everything locally on an embedded PostgreSQL and Kafka broker")
    dev.add_argument("--data-dir", type=Path, default=Path(os.environ.get("KEFU_DATA_DIR", ".kefu")))
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--channels-port", type=int, default=int(os.environ.get("KEFU_CHANNELS_PORT", 8000)))
    dev.add_argument("--router-port", type=int, default=int(os.environ.get("KEFU_ROUTER_PORT", 8001)))
    dev.add_argument("--escalation-port", type=int, default=int(os.environ.get("KEFU_ESCALATION_PORT", 8002)))
    dev.add_argument(
        "--receiver-port",
        type=int,
        default=int(os.environ.get("KEFU_RECEIVER_PORT", 8003)),
        help="port of the notification receiver on 127.0.0.1 (the example policy's webhooks post to 8003)",
    )
    dev.add_argument("--kafka-port", type=int, default=None, help="port of the embedded broker (default: a free one)")
    dev.add_argument(
        "--restart",
        action="store_true",
        default=os.environ.get("KEFU_DEV_RESTART") == "1",
        help="start a service that exits again, as a process manager would (default: stop everything)",
    )

    commands.add_parser("channels", help="run the channel adapters (webhooks)")
    commands.add_parser("router", help="run the router and agent desktop API")
    commands.add_parser("escalation", help="run the escalation service")
    commands.add_parser("receiver", help="run the notification receiver of kefu dev (needs KEFU_RECEIVER_SECRET)")
    commands.add_parser("migrate", help="apply database migrations to KEFU_DATABASE_URL")
    commands.add_parser("contracts", help="regenerate contracts/schemas/ from the models")
    config = commands.add_parser("config", help="check configuration files")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser(
        "validate", help="check the files together (e.g. kefu.yaml escalation.yaml): OK and warnings, or every error"
    )
    validate.add_argument("files", type=Path, nargs="+", metavar="FILE")

    # the arguments of simulate and dlq come with their modules, imported only for that command (`kefu router` starts
    # sooner without the simulator and the dead-letter tools)
    chosen = (sys.argv[1:] if argv is None else argv)[:1]
    simulate = commands.add_parser(
        "simulate",
        help="drive the decision core with Poisson arrivals; compare with Erlang C (and Cobham's priority waits)",
    )
    if chosen == ["simulate"]:
        from services.router import simulate_cli

        simulate_cli.add_arguments(simulate)
    dlq = commands.add_parser("dlq", help="list dead-lettered records; replay chosen ones after a fix")
    if chosen == ["dlq"]:
        from tools import dlq as dlq_cli

        dlq_cli.add_arguments(dlq)

    demo = commands.add_parser("demo", help="post a signed demo message (web chat, or another channel)")
    demo.add_argument("text", nargs="?", default="你好，我想咨询一下这款空调的安装服务")
    demo.add_argument(
        "--channel",
        default="webchat",
        choices=("webchat", "wechat", "douyin", "email", "phone"),
        help="default webchat",
    )
    demo.add_argument("--site", "--account", dest="site", default=None, help="account id (default: the first)")
    demo.add_argument("--conversation", default="demo-1")
    demo.add_argument("--channels-url", default="http://127.0.0.1:8000")
    demo.add_argument("--router-url", default="http://127.0.0.1:8001")
    demo.add_argument("--receiver-url", default="http://127.0.0.1:8003", help="kefu dev's notification receiver")

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print("kefu: configuration error:", *exc.errors, sep="\n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # one line with a hint (stack down, no database, port in use), not a traceback; KEFU_DEBUG=1 shows it
        from tools import cli_errors

        if os.environ.get(cli_errors.DEBUG_VARIABLE):
            raise
        print(f"kefu {args.command}: {cli_errors.explain(exc, args.command)}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from kefu.settings import ServiceSettings

    match args.command:
        case "dev":
            from tools import dev

            ports = {
                "channels": args.channels_port,
                "router": args.router_port,
                "escalation": args.escalation_port,
                "receiver": args.receiver_port,
            }
            return dev.run(dev.DevOptions(args.data_dir.resolve(), args.host, ports, args.kafka_port, args.restart))
        case "channels" | "router" | "escalation":
            # no garbage collection while the service imports its modules, builds its app and loads its state (some
            # 300 collections, 7 % of the router's CPU to start): one then, when it starts serving (tools.startup)
            gc.disable()
            try:
                from tools import assemble

                assemble.serve(args.command)
            finally:
                gc.enable()
        case "receiver":
            from tools import receiver

            return receiver.run()
        case "migrate":
            from tools import migrate

            migrate.upgrade(ServiceSettings().database_url)
        case "contracts":
            from contracts import schemas

            for path in schemas.write():
                print(path)
        case "config":
            from tools import config_check

            return config_check.main(args.files)
        case "simulate":
            from services.router import simulate_cli as simulate

            return simulate.main(args)
        case "dlq":
            from tools import dlq

            return dlq.main(args)
        case "demo":
            from tools import demo

            return demo.run(
                text=args.text,
                config_path=ServiceSettings().config_path,
                channel=args.channel,
                site_id=args.site,
                conversation=args.conversation,
                channels_url=args.channels_url,
                router_url=args.router_url,
                receiver_url=args.receiver_url,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
