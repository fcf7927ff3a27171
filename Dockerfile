# One image for every Jetflow process; the command picks which:
#   node dist/services/<ingest|orchestrator|dataset-generator|analyst>/src/main.js
#   node dist/libs/storage/src/local-aws-main.js   (local S3 + DynamoDB for a laptop stack)
FROM node:20-bookworm-slim

WORKDIR /app
# onnxruntime-node's install script would download CUDA libraries; the CPU build ships in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NODE_ENV=production

# Dependencies first, so source changes reuse this layer. Dev dependencies stay: the build needs
# buf and tsc, and the local S3/DynamoDB servers (s3rver, dynalite) are dev dependencies.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --include=dev

COPY . .
RUN npm run build && chown -R node:node /app

USER node
# Ingest HTTP and gRPC; the other services' /metrics ports (9464 orchestrator, 9465 dataset-generator, 9466 analyst).
EXPOSE 8080 50051 9464 9465 9466
CMD ["node", "dist/services/ingest/src/main.js"]
