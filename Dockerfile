FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin tessera

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
ENV TESSERA_DATA_DIR=/data
ENTRYPOINT ["tessera"]
