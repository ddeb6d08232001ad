//! Examples of using gmbot-core as a library; see the `[[example]]` targets.
