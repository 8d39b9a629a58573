# One image for every trialops process; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events ./events
COPY services ./services
COPY projections ./projections
COPY trial ./trial
COPY infra ./infra
COPY audit ./audit
COPY broker ./broker
COPY clients ./clients
COPY trialops ./trialops
RUN pip install --no-cache-dir .
RUN useradd --create-home trialops
USER trialops
# The writers' keys live in a named volume mounted here; made by the image so the volume is the
# trialops user's.
RUN mkdir -p /home/trialops/keys /home/trialops/checkpoints
WORKDIR /home/trialops
ENTRYPOINT ["trialops"]
