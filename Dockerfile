# Container image for the Helm chart. Not built in CI (the development machines have no Docker
# engine); build it where you publish images:  docker build -t <registry>/guardrails:<version> .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin guardrails

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/guardrails /usr/local/bin/guardrails
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/guardrails"]
CMD ["serve", "--help"]
