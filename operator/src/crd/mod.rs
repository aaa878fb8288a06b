//! The tpp.dev/v1alpha1 API.
