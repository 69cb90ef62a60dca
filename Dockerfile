# syntax=docker/dockerfile:1
# CPU image of tfjs-ddp: the coordinator and workers on the WebAssembly backend
# (@tensorflow/tfjs-backend-wasm, shipped with the package; no native download).
#   docker build -t tfjs-ddp:0.1.0 .
# For CUDA workers build Dockerfile.gpu instead.

# Node 26, the Active LTS line (since 2026-10-28; Node 20 reached its end of life on
# 2026-04-30), inside the package's engines; pinned, pin the digest too when you publish.
FROM node:26.10.0-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency runs an install script: the build needs none (tsc only).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts

FROM node:26.10.0-trixie-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/proto ./proto
COPY --from=build /app/dist/src ./dist/src
# The image's own user `node` (uid 1000), by number so that Kubernetes can verify
# runAsNonRoot. Nothing under /app is writable by it.
USER 1000:1000
# The coordinator's gRPC port and a worker's peer port (defaults of the CLI).
EXPOSE 7070 7071
# --initial-old-space-size: see GRADIENT_PROCESS_NODE_FLAGS (src/shared/transport/grpc-settings.ts).
ENTRYPOINT ["node", "--initial-old-space-size=128", "/app/dist/src/cli/main.js"]
CMD ["--help"]
