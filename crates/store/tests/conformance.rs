//! K2/K3/K4/X3/X9: the backend conformance suite against every SQLite flavour.

mod sqlite_file {
    kontextual_store::conformance_suite!(Some(
        kontextual_store::testsuite::SqliteFileHarness::new()
    ));

    /// K2: random operation sequences with reopen agree with the oracle.
    #[test]
    fn k2_model_test_against_oracle() {
        kontextual_store::testsuite::model_test(
            &|| Box::new(kontextual_store::testsuite::SqliteFileHarness::new()),
            24,
        );
    }
}

mod sqlite_memory {
    kontextual_store::conformance_suite!(Some(
        kontextual_store::testsuite::SqliteMemoryHarness::new()
    ));

    /// K2: random operation sequences agree with the oracle.
    #[test]
    fn k2_model_test_against_oracle() {
        kontextual_store::testsuite::model_test(
            &|| Box::new(kontextual_store::testsuite::SqliteMemoryHarness::new()),
            48,
        );
    }
}
