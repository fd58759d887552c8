# hyperion serve: the OpenAI/Anthropic-compatible gateway server.
#
#   docker build -t hyperion .
#   docker run -p 8080:8080 -v $PWD/hyperion.yaml:/etc/hyperion/hyperion.yaml:ro \
#     -e OPENAI_API_KEY -e ANTHROPIC_API_KEY hyperion
#
# The same server the tests start (`hyperion serve`, uvicorn with uvloop + httptools). With several
# workers or replicas, put state in Redis (state.backend: redis) — see compose.yaml.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hyperion_core ./hyperion_core
COPY hyperion_lc ./hyperion_lc
COPY hyperion_li ./hyperion_li
RUN pip install --no-cache-dir --prefix=/install '.[server]'

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HYPERION_STATE=/var/lib/hyperion
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /var/lib/hyperion --create-home hyperion
USER hyperion
WORKDIR /var/lib/hyperion
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"
# SIGTERM: no new connections; requests and streams in flight get --graceful-timeout seconds to finish
STOPSIGNAL SIGTERM
ENTRYPOINT ["hyperion", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--config", "/etc/hyperion/hyperion.yaml", "--workers", "2"]
