<?php
/**
 * The editor script's dependencies (what a Node build would generate; written by hand since the
 * script needs no build).
 *
 * @package SimulcastPlayer
 */

return array(
	'dependencies' => array( 'wp-blocks', 'wp-element', 'wp-block-editor', 'wp-components', 'wp-i18n', 'wp-server-side-render' ),
	'version'      => '1.0.0',
);
