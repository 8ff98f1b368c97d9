//! Pure builders of the Kubernetes objects each job version runs as.
