# One image for every Jetflow process; the command picks which (docker-compose.yml, deploy/k8s):
#   node dist/services/<ingest|orchestrator|dataset-generator|analyst>/src/main.js
# Stages: build (dev dependencies, buf + tsc), prod-deps (npm ci --omit=dev), runtime (the default
# target: dist/, the libs as built workspace packages (libs/<name>/package.json + dist/, which
# node_modules/@jetflow/<name> links to), production node_modules and the files the services read at
# run time, as uid 1000),
# and local-aws (laptop only: s3rver and dynalite are dev dependencies, so that image is larger).
# test/docker.test.ts checks that every file copied and every command exists after `npm run build`.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS base
WORKDIR /app
# onnxruntime-node's install script would download CUDA libraries; its CPU build ships in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip

FROM base AS build
COPY package.json package-lock.json .npmrc ./
# The workspace packages (libs/*, and packages/worker: the SDK the built-in workers import) before npm ci,
# which links them into node_modules/@jetflow.
COPY libs ./libs
COPY packages ./packages
RUN npm ci --no-audit --no-fund --include=dev
COPY buf.yaml buf.gen.yaml tsconfig.base.json tsconfig.json ./
COPY proto ./proto
COPY services ./services
COPY scripts ./scripts
COPY bench ./bench
RUN npm run build

FROM base AS prod-deps
COPY package.json package-lock.json .npmrc ./
COPY libs ./libs
COPY packages ./packages
RUN npm ci --no-audit --no-fund --omit=dev && npm cache clean --force

FROM base AS local-aws
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/libs ./libs
COPY package.json ./
# A named volume mounted here starts with this directory's owner: writable by uid 1000.
RUN mkdir -p /data && chown 1000:1000 /data
USER 1000:1000
EXPOSE 4567 4569
CMD ["node", "libs/storage/dist/local-aws-main.js", "--host", "0.0.0.0", "--s3-port", "4569", "--dynamo-port", "4567", "--dir", "/data"]

FROM base AS runtime
ENV NODE_ENV=production
# Nothing at run time installs packages: without npm, npx and corepack the image has less to exploit.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# node_modules/@jetflow/worker links here: the SDK's bundle (built by npm run build) and its package.json.
COPY --from=build /app/packages/worker/dist ./packages/worker/dist
COPY packages/worker/package.json ./packages/worker/
# The built libs (each package.json's exports point into its dist/). Read at run time besides code: the
# models' libs/models/assets (analyst, dataset-generator); the dashboard (ingest) and the version (ops API).
COPY --from=build /app/libs ./libs
COPY services/ingest/ui ./services/ingest/ui
COPY package.json ./
# Numeric, so Kubernetes' runAsNonRoot can verify it (the node image's user "node" is 1000).
USER 1000:1000
# Ingest HTTP and gRPC; the /metrics and /healthz ports of the orchestrator, dataset-generator, analyst.
EXPOSE 8080 50051 9464 9465 9466
CMD ["node", "dist/services/ingest/src/main.js"]
