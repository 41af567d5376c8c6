"""Pure code: specs with positions, the ${{...}} grammar, arrays, bindings, Invocations,
pipeline plans. Nothing here touches Docker, the run store or the clock."""
