// The Simulcast Player block in the editor: plain script (no build step), settings in the
// sidebar, a server-side preview. The saved content is empty: PHP renders the block.
( function ( wp ) {
	'use strict';
	const el = wp.element.createElement;
	const __ = wp.i18n.__;
	const { InspectorControls, useBlockProps } = wp.blockEditor;
	const { PanelBody, TextControl, ToggleControl } = wp.components;
	const ServerSideRender = wp.serverSideRender;

	wp.blocks.registerBlockType( 'simulcast/player', {
		edit( { attributes, setAttributes } ) {
			const toggle = ( name, label ) =>
				el( ToggleControl, {
					label,
					checked: attributes[ name ],
					onChange: ( value ) => setAttributes( { [ name ]: value } ),
				} );
			return el(
				'div',
				useBlockProps(),
				el(
					InspectorControls,
					{},
					el(
						PanelBody,
						{ title: __( 'Stream', 'simulcast-player' ) },
						el( TextControl, {
							label: __( 'Public key (pk_); empty: the settings page’s', 'simulcast-player' ),
							value: attributes.apiKey,
							onChange: ( value ) => setAttributes( { apiKey: value.trim() } ),
						} ),
						el( TextControl, {
							label: __( 'Height in px (0: 16:9)', 'simulcast-player' ),
							type: 'number',
							value: attributes.height,
							onChange: ( value ) => setAttributes( { height: Math.max( 0, parseInt( value, 10 ) || 0 ) } ),
						} ),
						toggle( 'autoplay', __( 'Autoplay', 'simulcast-player' ) ),
						toggle( 'muted', __( 'Start muted', 'simulcast-player' ) ),
						toggle( 'tips', __( 'Show "Support the stream"', 'simulcast-player' ) )
					)
				),
				el( ServerSideRender, { block: 'simulcast/player', attributes } )
			);
		},
		save() {
			return null;
		},
	} );
} )( window.wp );
